// mpg.js: libmpg for JavaScript (GJS), with plain values and Promises
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// An ES module on top of the introspected API (gi://Mpg): Process, Queue,
// Pipe and Pool in the spelling of Python's multiprocessing, with plain JS
// values in and out and Promise-returning async methods. See docs/gjs.md.
//
// JavaScript must never run in a forked child (SpiderMonkey's helper
// threads do not survive a fork), so every process and pool worker made
// here is a new `gjs` program, spawned with mpg-worker.js next to this
// file, which finds the task by name:
//
//   <module URL>#<export name>    an exported function of an ES module
//   source:<JavaScript source>    a self-contained function, as its text
//
// prefixed with `...` when the argument is an array to spread into the
// call's arguments (`f(...args)`), as Process and Pool.apply/starmap do.

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Mpg from 'gi://Mpg?version=1.0';
import System from 'system';

// ---------------------------------------------------------------------------
// Set-up: spawned gjs workers, found next to this module

const THIS_FILE = Gio.File.new_for_uri(import.meta.url);

/** The path of the worker script that spawned workers run. */
export const workerScript = THIS_FILE.get_parent().get_child('mpg-worker.js').get_path();

/** True in a spawned worker (a process or pool worker started by libmpg). */
export const isWorker = GLib.getenv('MPG_WORKER') !== null;

function defaultExecutable() {
    const env = GLib.getenv('MPG_GJS');
    if (env)
        return env;
    // The gjs that runs this program, when it is one (not, e.g., a shell
    // that embeds GJS).
    try {
        const self = GLib.file_read_link('/proc/self/exe');
        if (/^gjs/.test(GLib.path_get_basename(self)))
            return self;
    } catch {
        // fall through
    }
    return GLib.find_program_in_path('gjs-console') ?? GLib.find_program_in_path('gjs') ?? 'gjs';
}

let executable = defaultExecutable();

function applySpawnCommand() {
    Mpg.set_spawn_command([executable, '-m', workerScript]);
}

/**
 * Sets the gjs program that spawned workers run (multiprocessing's
 * set_executable()). The default is the gjs running this program, or the
 * MPG_GJS environment variable.
 *
 * @param {string} path the path of a gjs executable
 */
export function setExecutable(path) {
    executable = path;
    applySpawnCommand();
}

applySpawnCommand();
// The only start method that is safe for JavaScript, and the default of
// every process and pool of this program, including those made through
// the raw gi://Mpg API.
Mpg.set_start_method(Mpg.StartMethod.SPAWN);

const SPAWN = Mpg.StartMethod.SPAWN;

/** @returns {string} always 'spawn': the only start method for GJS */
export function getStartMethod() {
    return 'spawn';
}

/**
 * Accepts 'spawn' only: fork and forkserver would run JavaScript in a
 * forked child, which hangs SpiderMonkey.
 *
 * @param {string} method the start method
 */
export function setStartMethod(method) {
    if (method !== 'spawn') {
        throw new Error(`The start method '${method}' cannot run JavaScript: JavaScript ` +
            'must never run in a forked child; GJS uses spawn');
    }
}

/** @returns {number} the number of CPUs */
export function cpuCount() {
    return Mpg.cpu_count();
}

const MAIN_URI = System.programPath ? Gio.File.new_for_path(System.programPath).get_uri() : null;

/**
 * Whether the module whose import.meta is given is the program's main
 * module, in the main process: JavaScript's `if __name__ == '__main__'`.
 * A module that exports tasks and also starts processes must guard its
 * main code with it, as a spawned worker imports the module to find the
 * task.
 *
 * @param {object} meta the import.meta of the module
 * @returns {boolean}
 */
export function isMainModule(meta) {
    return !isWorker && meta.url === MAIN_URI;
}

// ---------------------------------------------------------------------------
// Errors

const JS_ERROR_DOMAIN = 'mpg-js-error-quark';
const JS_ERROR_QUARK = GLib.quark_from_string(JS_ERROR_DOMAIN);
const MPG_ERROR = Mpg.error_quark();
const STACK_MARK = '\n--- remote JavaScript stack ---\n';

/** The error domain of a JavaScript exception thrown in a task. */
export const JSErrorCode = Object.freeze({
    /** an Error (or any object with a name and a message) */
    ERROR: 0,
    /** a thrown value that is not an Error: its text is the message */
    VALUE: 1,
});

/** A queue that stayed empty: get() with block false or a timeout. */
export class Empty extends Error {
    name = 'Empty';
}

/** A full bounded queue: put() with block false or a timeout. */
export class Full extends Error {
    name = 'Full';
}

/** A wait that timed out. */
export class TimeoutError extends Error {
    name = 'TimeoutError';
}

/** The other end of a connection is closed. */
export class EOFError extends Error {
    name = 'EOFError';
}

const BUILTIN_ERRORS = {
    Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
    Empty, Full, TimeoutError, EOFError,
};

// Turns an exception thrown by a task into the GError that travels to the
// parent: JavaScript errors in the mpg-js-error-quark domain, with the
// name, message and stack in the message; GLib.Errors keep their domain and
// code, with the stack appended.
function errorToGError(e) {
    if (e instanceof GLib.Error) {
        if (e.domain === MPG_ERROR && e.code === Mpg.Error.UNKNOWN_TASK)
            return e;
        const stack = typeof e.stack === 'string' && e.stack ? STACK_MARK + e.stack : '';
        return new GLib.Error(e.domain, e.code, e.message + stack);
    }
    if (e !== null && typeof e === 'object' && 'message' in e) {
        const name = typeof e.name === 'string' && e.name ? e.name : 'Error';
        const stack = typeof e.stack === 'string' ? e.stack : '';
        return new GLib.Error(JS_ERROR_QUARK, JSErrorCode.ERROR,
            `${name}: ${e.message}${STACK_MARK}${stack}`);
    }
    let text;
    try {
        text = String(e);
    } catch {
        text = Object.prototype.toString.call(e);
    }
    return new GLib.Error(JS_ERROR_QUARK, JSErrorCode.VALUE, `${text}${STACK_MARK}`);
}

function splitStack(message) {
    const i = message.lastIndexOf(STACK_MARK);
    if (i < 0)
        return [message, null];
    return [message.slice(0, i), message.slice(i + STACK_MARK.length)];
}

/**
 * Turns an error from libmpg into the error to throw in JavaScript: an
 * exception thrown by a task becomes an Error of the same built-in class
 * (or an Error with the same name), with the remote message, and the
 * remote stack as its stack (also in `remoteStack`); Mpg errors with a
 * JavaScript counterpart become it (Empty, Full, TimeoutError,
 * EOFError, with the GLib.Error as cause); other GLib.Errors stay as they
 * are.
 *
 * @param {Error} e the error caught from a gi://Mpg call
 * @returns {Error}
 */
export function fromGError(e) {
    if (!(e instanceof GLib.Error))
        return e;
    const [text, stack] = splitStack(e.message);
    if (e.domain === JS_ERROR_QUARK) {
        let error;
        if (e.code === JSErrorCode.VALUE) {
            error = new Error(text);
        } else {
            // `<name>: <message>`, perhaps after prefixes that libmpg added
            // (`Pool initializer failed: `), which stay in the message.
            const colon = text.indexOf(': ');
            const match = /^((?:[^:]*\s[^:]*: )*)([^\s:]+): ([^]*)$/.exec(text) ??
                (colon > 0 ? [null, '', text.slice(0, colon), text.slice(colon + 2)] : null);
            const name = match ? match[2] : 'Error';
            const message = match ? match[1] + match[3] : text;
            const Class = Object.hasOwn(BUILTIN_ERRORS, name) ? BUILTIN_ERRORS[name] : Error;
            error = new Class(message);
            if (error.name !== name)
                error.name = name;
        }
        error.remoteStack = stack ?? '';
        error.stack = stack ?? '';
        return error;
    }
    let error = e;
    if (stack !== null) {
        error = new GLib.Error(e.domain, e.code, text);
        error.remoteStack = stack;
        error.stack = stack;
    }
    if (e.domain === MPG_ERROR) {
        const Class = {
            [Mpg.Error.EMPTY]: Empty,
            [Mpg.Error.FULL]: Full,
            [Mpg.Error.TIMEOUT]: TimeoutError,
            [Mpg.Error.END_OF_STREAM]: EOFError,
        }[e.code];
        if (Class)
            return new Class(text, {cause: error});
    }
    return error;
}

// A wait with a timeout: false when it timed out, as Python's join(timeout).
function wait(func) {
    try {
        return func();
    } catch (e) {
        if (e instanceof GLib.Error && e.matches(MPG_ERROR, Mpg.Error.TIMEOUT))
            return false;
        throw fromGError(e);
    }
}

function call(func) {
    try {
        return func();
    } catch (e) {
        throw fromGError(e);
    }
}

// Runs an async GIO-style call as a Promise.
function promise(start) {
    return new Promise((resolve, reject) => {
        start((finish => {
            try {
                resolve(finish());
            } catch (e) {
                reject(fromGError(e));
            }
        }));
    });
}

// ---------------------------------------------------------------------------
// Values: JavaScript <-> GVariant

const MAX_DEPTH = 60;
const TAG_PREFIX = 'mpg:';
const T_V = new GLib.VariantType('v');
const T_SV = new GLib.VariantType('{sv}');
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function typeOf(text) {
    return new GLib.VariantType(text);
}

function fromTyped(type, typed) {
    const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
    return GLib.Variant.new_from_bytes(typeOf(type), new GLib.Bytes(bytes), true);
}

function nothing() {
    return GLib.Variant.new_maybe(T_V, null);
}

function tagged(tag, payload) {
    return GLib.Variant.new_tuple([
        GLib.Variant.new_string(TAG_PREFIX + tag),
        GLib.Variant.new_variant(payload),
    ]);
}

function describe(value) {
    let text;
    try {
        text = typeof value === 'function' ? `function ${value.name || '(anonymous)'}`
            : typeof value === 'symbol' ? value.toString()
                : `${Object.prototype.toString.call(value)}`;
    } catch {
        text = typeof value;
    }
    return text;
}

const SENDABLE = 'numbers, strings, booleans, null, undefined, bigints (64-bit), arrays, ' +
    'objects with string keys, Uint8Array, GLib.Variant, and Queue and Connection ' +
    'objects in Process arguments and Pool initargs';

function cannotSend(value, where, why) {
    return new TypeError(`cannot send ${describe(value)} at ${where} to another process: ` +
        `${why ?? `libmpg sends ${SENDABLE}`}`);
}

// A JS string that UTF-8 cannot carry as it is: with NUL or lone surrogates.
const AWKWARD_STRING = /\0|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

// WTF-8: UTF-8 that also carries lone surrogates, for the 'mpg:str' tag.
function wtf8Encode(s) {
    const out = [];
    for (let i = 0; i < s.length; i++) {
        let c = s.charCodeAt(i);
        if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.length) {
            const d = s.charCodeAt(i + 1);
            if (d >= 0xDC00 && d <= 0xDFFF) {
                c = 0x10000 + ((c - 0xD800) << 10) + (d - 0xDC00);
                i++;
            }
        }
        if (c < 0x80) {
            out.push(c);
        } else if (c < 0x800) {
            out.push(0xC0 | c >> 6, 0x80 | c & 0x3F);
        } else if (c < 0x10000) {
            out.push(0xE0 | c >> 12, 0x80 | c >> 6 & 0x3F, 0x80 | c & 0x3F);
        } else {
            out.push(0xF0 | c >> 18, 0x80 | c >> 12 & 0x3F, 0x80 | c >> 6 & 0x3F,
                0x80 | c & 0x3F);
        }
    }
    return new Uint8Array(out);
}

function wtf8Decode(b) {
    let s = '';
    for (let i = 0; i < b.length;) {
        const c = b[i];
        let cp, n;
        if (c < 0x80) {
            cp = c;
            n = 1;
        } else if (c >= 0xF0) {
            cp = (c & 0x07) << 18 | (b[i + 1] & 0x3F) << 12 | (b[i + 2] & 0x3F) << 6 |
                b[i + 3] & 0x3F;
            n = 4;
        } else if (c >= 0xE0) {
            cp = (c & 0x0F) << 12 | (b[i + 1] & 0x3F) << 6 | b[i + 2] & 0x3F;
            n = 3;
        } else {
            cp = (c & 0x1F) << 6 | b[i + 1] & 0x3F;
            n = 2;
        }
        s += String.fromCodePoint(cp);
        i += n;
    }
    return s;
}

function encodeString(s) {
    if (!AWKWARD_STRING.test(s))
        return GLib.Variant.new_string(s);
    return tagged('str', fromTyped('ay', wtf8Encode(s)));
}

function isInt32(x) {
    return typeof x === 'number' && (x | 0) === x && !Object.is(x, -0);
}

function isSafeInt(x) {
    return Number.isSafeInteger(x) && !Object.is(x, -0);
}

function encodeArray(value, where, depth, fds) {
    const n = value.length;
    if (n > 0) {
        const first = value[0];
        if (typeof first === 'number') {
            let allInt32 = true, allSafe = true, allNumbers = true;
            for (let i = 0; i < n; i++) {
                const x = value[i];
                if (typeof x !== 'number') {
                    allNumbers = false;
                    break;
                }
                if (allInt32 && !isInt32(x))
                    allInt32 = false;
                if (allSafe && !isSafeInt(x))
                    allSafe = false;
            }
            if (allNumbers) {
                if (allInt32)
                    return fromTyped('ai', Int32Array.from(value));
                if (allSafe)
                    return fromTyped('ax', BigInt64Array.from(value, BigInt));
                return fromTyped('ad', Float64Array.from(value));
            }
        } else if (typeof first === 'boolean') {
            if (value.every(x => typeof x === 'boolean'))
                return fromTyped('ab', Uint8Array.from(value, x => x ? 1 : 0));
        } else if (typeof first === 'string') {
            if (value.every(x => typeof x === 'string' && !AWKWARD_STRING.test(x)))
                return GLib.Variant.new_strv(value);
        }
    }
    const children = new Array(n);
    for (let i = 0; i < n; i++)
        children[i] = GLib.Variant.new_variant(encode(value[i], `${where}[${i}]`, depth, fds));
    return GLib.Variant.new_array(T_V, children);
}

function encode(value, where, depth, fds) {
    switch (typeof value) {
    case 'undefined':
        return nothing();
    case 'boolean':
        return GLib.Variant.new_boolean(value);
    case 'number':
        return isSafeInt(value) ? fromTyped('x', BigInt64Array.of(BigInt(value)))
            : GLib.Variant.new_double(value);
    case 'bigint':
        if (value < INT64_MIN || value > INT64_MAX)
            throw cannotSend(value, where, 'a bigint must fit in 64 bits');
        return fromTyped('x', BigInt64Array.of(value));
    case 'string':
        return encodeString(value);
    case 'function':
    case 'symbol':
        throw cannotSend(value, where);
    }
    if (value === null)
        return nothing();
    if (value instanceof GLib.Variant)
        return value;
    if (value instanceof Uint8Array)
        return fromTyped('ay', value);
    if (value instanceof Queue || value instanceof Connection) {
        if (!fds) {
            throw cannotSend(value, where,
                'queues and connections can be sent as arguments of a Process, in a ' +
                'Pool\'s initargs, through a Queue, or through a Connection, not as ' +
                'arguments of a Pool\'s tasks');
        }
        const kind = value instanceof Queue ? 'queue' : 'connection';
        return tagged(kind, call(() => value.gobject.to_handle(fds)));
    }
    if (++depth > MAX_DEPTH)
        throw cannotSend(value, where, `values nest ${MAX_DEPTH} levels at most`);
    if (Array.isArray(value))
        return encodeArray(value, where, depth, fds);
    const proto = Object.getPrototypeOf(value);
    if (proto === Object.prototype || proto === null) {
        const entries = [];
        for (const key of Object.keys(value)) {
            if (key.includes('\0'))
                throw cannotSend(key, `${where} (a key)`, 'object keys cannot contain NUL');
            entries.push(GLib.Variant.new_dict_entry(encodeString(key),
                GLib.Variant.new_variant(encode(value[key], `${where}.${key}`, depth, fds))));
        }
        return GLib.Variant.new_array(T_SV, entries);
    }
    throw cannotSend(value, where);
}

/**
 * Converts a JavaScript value to the GVariant that libmpg sends. The
 * encoding is self-describing: the GVariant's type says which JavaScript
 * value comes back (see docs/gjs.md for the table).
 *
 * @param {*} value the value
 * @param {Gio.UnixFDList} [fdList] where the fds of queues and connections
 *   in the value go; without it, they cannot be sent
 * @returns {GLib.Variant}
 */
export function toVariant(value, fdList = null) {
    return encode(value, 'value', 0, fdList);
}

function bytesOf(variant) {
    return variant.get_data_as_bytes().toArray();
}

function typedOf(Type, variant) {
    const bytes = bytesOf(variant);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    return new Type(copy.buffer, 0, bytes.length / Type.BYTES_PER_ELEMENT);
}

function int64ToJS(x) {
    return x >= -9007199254740991n && x <= 9007199254740991n ? Number(x) : x;
}

function decodeTagged(tag, payload, fds) {
    switch (tag) {
    case 'str':
        return wtf8Decode(bytesOf(payload));
    case 'queue':
        return Queue._fromHandle(payload, fds);
    case 'connection':
        return Connection._fromHandle(payload, fds);
    case 'call':
        return decode(payload, fds);
    }
    return [TAG_PREFIX + tag, decode(payload, fds)];
}

function decode(variant, fds) {
    const type = variant.get_type_string();
    switch (type[0]) {
    case 'b':
        return variant.get_boolean();
    case 'y':
        return variant.get_byte();
    case 'n':
        return variant.get_int16();
    case 'q':
        return variant.get_uint16();
    case 'i':
        return variant.get_int32();
    case 'u':
        return variant.get_uint32();
    case 'h':
        return variant.get_handle();
    case 'x':
        return int64ToJS(typedOf(BigInt64Array, variant)[0]);
    case 't':
        return int64ToJS(typedOf(BigUint64Array, variant)[0]);
    case 'd':
        return variant.get_double();
    case 's':
    case 'o':
    case 'g':
        return variant.get_string()[0];
    case 'v':
        return decode(variant.get_variant(), fds);
    case 'm':
        return variant.n_children() > 0 ? decode(variant.get_child_value(0), fds) : null;
    case 'a':
        switch (type) {
        case 'ay':
            return bytesOf(variant);
        case 'ab':
            return Array.from(bytesOf(variant), x => x !== 0);
        case 'an':
            return Array.from(typedOf(Int16Array, variant));
        case 'aq':
            return Array.from(typedOf(Uint16Array, variant));
        case 'ai':
            return Array.from(typedOf(Int32Array, variant));
        case 'au':
            return Array.from(typedOf(Uint32Array, variant));
        case 'ax':
            return Array.from(typedOf(BigInt64Array, variant), int64ToJS);
        case 'at':
            return Array.from(typedOf(BigUint64Array, variant), int64ToJS);
        case 'ad':
            return Array.from(typedOf(Float64Array, variant));
        case 'as':
            return variant.get_strv();
        }
        {
            const n = variant.n_children();
            if (type[1] === '{') {
                const object = {};
                for (let i = 0; i < n; i++) {
                    const entry = variant.get_child_value(i);
                    object[String(decode(entry.get_child_value(0), fds))] =
                        decode(entry.get_child_value(1), fds);
                }
                return object;
            }
            const array = new Array(n);
            for (let i = 0; i < n; i++)
                array[i] = decode(variant.get_child_value(i), fds);
            return array;
        }
    case '(':
        if (type === '(sv)') {
            const tag = variant.get_child_value(0).get_string()[0];
            if (tag.startsWith(TAG_PREFIX)) {
                return decodeTagged(tag.slice(TAG_PREFIX.length),
                    variant.get_child_value(1).get_variant(), fds);
            }
        }
    // fall through: a tuple is an array
    case '{': {
        const n = variant.n_children();
        const array = new Array(n);
        for (let i = 0; i < n; i++)
            array[i] = decode(variant.get_child_value(i), fds);
        return array;
    }
    }
    return variant.deepUnpack();
}

/**
 * Converts a GVariant to a JavaScript value: the inverse of toVariant().
 * Any GVariant can be converted.
 *
 * @param {GLib.Variant | null} variant the value, or null (gives null)
 * @param {Gio.UnixFDList} [fdList] the fds that handles in it refer to
 * @returns {*}
 */
export function fromVariant(variant, fdList = null) {
    return variant === null ? null : decode(variant, fdList);
}

// Closes the fds of a list once they are sent or rebuilt into objects
// (libmpg dups what it keeps): a pipe end that the program closed must not
// stay open through a list that waits for the garbage collector.
function closeFdList(fds) {
    if (!fds || fds.get_length() === 0)
        return;
    for (const fd of fds.steal_fds())
        GLib.close(fd);
}

// ---------------------------------------------------------------------------
// Tasks: how a function is named for a spawned worker

/**
 * A task that a spawned worker finds by name: an exported function of an
 * ES module.
 */
export class Task {
    /**
     * @param {string} module the module's URL (import.meta.url)
     * @param {string} name the export's name
     */
    constructor(module, name) {
        if (typeof module !== 'string' || !module.includes(':'))
            throw new TypeError(`a task's module must be a URL, e.g. import.meta.url (got ${module})`);
        if (typeof name !== 'string' || !name)
            throw new TypeError('a task needs the name of an exported function');
        this.module = module;
        this.name = name;
        Object.freeze(this);
    }

    /** @returns {string} the task's name for libmpg */
    toString() {
        return `${this.module}#${this.name}`;
    }
}

/**
 * Names the exported function `name` of the module at `module` (a URL:
 * pass import.meta.url for the calling module) as a task.
 *
 * @param {string} module the module's URL
 * @param {string} name the export's name
 * @returns {Task}
 */
export function task(module, name) {
    return new Task(module, name);
}

function functionSource(f) {
    const text = Function.prototype.toString.call(f);
    if (/\{\s*\[native code\]\s*\}\s*$/.test(text)) {
        throw new TypeError(`the function ${f.name || '(anonymous)'} has no source to send ` +
            '(native or bound): pass a self-contained function or mpg.task(moduleURL, exportName)');
    }
    // Methods (`{ f(x) {} }`) are not expressions: check that the text
    // compiles here, before a worker tries.
    try {
        // eslint-disable-next-line no-new-func
        new Function(`return (${text}\n);`);
    } catch (e) {
        throw new TypeError(`the function ${f.name || '(anonymous)'} cannot be sent as source ` +
            `(${e.message}): write it as a function expression or arrow function, or ` +
            'export it and pass mpg.task(moduleURL, exportName)');
    }
    return text;
}

/**
 * The name a spawned worker finds a task by.
 *
 * @param {Function | Task | string | Array} target a self-contained
 *   function (sent as source text), a Task, a string `<URL>#<export>`, or
 *   an array [moduleURL, exportName]
 * @returns {string}
 */
export function taskName(target) {
    if (typeof target === 'function')
        return `source:${functionSource(target)}`;
    if (target instanceof Task)
        return target.toString();
    if (Array.isArray(target) && target.length === 2)
        return new Task(target[0], target[1]).toString();
    if (typeof target === 'string') {
        if (target.startsWith('source:') || /^[a-z][a-z0-9+.-]*:[^#]*#[^#]+$/i.test(target))
            return target;
        throw new TypeError(`the task '${target}' is not '<module URL>#<export name>'`);
    }
    throw new TypeError(`${describe(target)} is not a task: pass a self-contained function, ` +
        'mpg.task(moduleURL, exportName) or [moduleURL, exportName]');
}

// ---------------------------------------------------------------------------
// Process

function exitcodeOf(code) {
    return code === Mpg.PROCESS_EXITCODE_NONE ? null : code;
}

/**
 * A process that runs a task in a new gjs program: Python's
 * multiprocessing.Process.
 *
 *     const p = new Process(f, ['bob']);   // or new Process({target: f, args: ['bob']})
 *     p.start();
 *     await p.join();
 */
export class Process {
    /**
     * @param {Function | Task | string | Array | object} target the task, or
     *   an object {target, args, name, daemon}
     * @param {Array} [args] the arguments: target(...args)
     * @param {object} [options] name, daemon
     */
    constructor(target, args = [], options = {}) {
        if (target !== null && typeof target === 'object' && !(target instanceof Task) &&
            !Array.isArray(target)) {
            options = target;
            target = options.target;
            args = options.args ?? [];
        }
        if (!Array.isArray(args))
            throw new TypeError('a Process\'s args must be an array');
        const fds = new Gio.UnixFDList();
        const props = {start_method: SPAWN, args: encode(args, 'args', 0, fds)};
        if (options.name !== undefined)
            props.name = String(options.name);
        if (options.daemon !== undefined)
            props.daemon = Boolean(options.daemon);
        this.gobject = new Mpg.Process(props);
        if (target !== undefined && target !== null)
            this.gobject.set_target_name(`...${taskName(target)}`);
        if (fds.get_length() > 0) {
            this.gobject.set_fd_list(fds);
            this._fds = fds;
        }
    }

    /** Starts the process. */
    start() {
        try {
            call(() => this.gobject.start());
        } finally {
            // The child has its copies of the fds now.
            if (this._fds) {
                this.gobject.set_fd_list(null);
                closeFdList(this._fds);
                this._fds = null;
            }
        }
    }

    /**
     * Waits for the process to end, without blocking the main loop.
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<void>}
     */
    join(cancellable = null) {
        return promise(done => this.gobject.join_async(cancellable,
            (obj, res) => done(() => {
                obj.join_finish(res);
            })));
    }

    /**
     * Waits for the process to end, blocking.
     *
     * @param {number} [timeout] milliseconds, -1 or undefined for no limit
     * @returns {boolean} whether it ended
     */
    joinSync(timeout = -1) {
        return wait(() => this.gobject.join(timeout, null));
    }

    /** @returns {boolean} */
    isAlive() {
        return this.gobject.is_alive();
    }

    /** Sends SIGTERM. */
    terminate() {
        call(() => this.gobject.terminate());
    }

    /** Sends SIGKILL. */
    kill() {
        call(() => this.gobject.kill());
    }

    /** Releases the process's resources; it must have ended. */
    close() {
        call(() => this.gobject.close());
    }

    /**
     * The target's return value, once the process has ended; throws the
     * target's error if it threw.
     *
     * @returns {*}
     */
    result() {
        return fromVariant(call(() => this.gobject.dup_result()));
    }

    /** @type {number | null} the process id, null before start */
    get pid() {
        const pid = this.gobject.pid;
        return pid > 0 ? pid : null;
    }

    /** @type {number | null} the exit code, null until it ends */
    get exitcode() {
        return exitcodeOf(this.gobject.exitcode);
    }

    /** @type {string} */
    get name() {
        return this.gobject.name;
    }

    set name(value) {
        this.gobject.name = value;
    }

    /** @type {boolean} */
    get daemon() {
        return this.gobject.daemon;
    }

    set daemon(value) {
        this.gobject.daemon = value;
    }

    /** @type {number} an fd readable when the process has ended */
    get sentinel() {
        return this.gobject.sentinel;
    }
}

/** @returns {number} this process's id: Python's os.getpid() */
export function getpid() {
    return new Gio.Credentials().get_unix_pid();
}

/** @returns {number} the id of this process's parent: Python's os.getppid() */
export function getppid() {
    const [, stat] = GLib.file_get_contents('/proc/self/stat');
    const text = new TextDecoder().decode(stat);
    // pid (comm) state ppid ...: comm may hold spaces and parentheses.
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Information about this process (pid, name) as Python's current_process(). */
export function currentProcess() {
    const p = Mpg.current_process();
    return {name: p.name, pid: p.pid, daemon: p.daemon};
}

/** The parent process's information, or null in the main process. */
export function parentProcess() {
    const p = Mpg.parent_process();
    return p ? {name: p.name, pid: p.pid, daemon: p.daemon} : null;
}

// ---------------------------------------------------------------------------
// Queue

function timeoutOf(timeout) {
    return timeout === undefined || timeout === null ? -1 : timeout;
}

/**
 * A queue that many processes can put to and get from: Python's
 * multiprocessing.Queue (JoinableQueue with `{joinable: true}`).
 * Timeouts are in milliseconds (-1 or omitted: no limit).
 */
export class Queue {
    /**
     * @param {number} [maxsize] 0 for no bound
     * @param {object} [options] joinable
     */
    constructor(maxsize = 0, {joinable = false} = {}) {
        if (maxsize instanceof Mpg.Queue) {
            this.gobject = maxsize;
            return;
        }
        this.gobject = call(() => joinable ? Mpg.Queue.new_joinable(maxsize)
            : Mpg.Queue.new(maxsize));
    }

    static _fromHandle(handle, fds) {
        if (!fds)
            throw new Error('a queue arrived without its fds');
        return new Queue(call(() => Mpg.Queue.new_from_handle(handle, fds)));
    }

    /**
     * @param {*} value
     * @param {object} [options] block (default true), timeout (ms)
     */
    put(value, {block = true, timeout} = {}) {
        const fds = new Gio.UnixFDList();
        const variant = encode(value, 'value', 0, fds);
        try {
            call(() => fds.get_length() > 0
                ? this.gobject.put_with_fds(variant, fds, block, timeoutOf(timeout), null)
                : this.gobject.put(variant, block, timeoutOf(timeout), null));
        } finally {
            closeFdList(fds);
        }
    }

    /** @param {*} value */
    putNowait(value) {
        this.put(value, {block: false});
    }

    /**
     * @param {object} [options] block (default true), timeout (ms)
     * @returns {*}
     */
    get({block = true, timeout} = {}) {
        const [variant, fds] = call(() =>
            this.gobject.get_with_fds(block, timeoutOf(timeout), null));
        try {
            return fromVariant(variant, fds);
        } finally {
            closeFdList(fds);
        }
    }

    /** @returns {*} */
    getNowait() {
        return this.get({block: false});
    }

    /**
     * Gets a value without blocking the main loop.
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<*>}
     */
    getAsync(cancellable = null) {
        return promise(done => this.gobject.get_async(cancellable,
            (obj, res) => done(() => fromVariant(obj.get_finish(res)))));
    }

    /** @returns {number} */
    qsize() {
        return this.gobject.qsize();
    }

    /** @returns {boolean} */
    empty() {
        return this.gobject.empty();
    }

    /** @returns {boolean} */
    full() {
        return this.gobject.full();
    }

    close() {
        this.gobject.close();
    }

    /** @param {number} [timeout] ms */
    joinThread(timeout = -1) {
        return wait(() => this.gobject.join_thread(timeout, null));
    }

    cancelJoinThread() {
        this.gobject.cancel_join_thread();
    }

    /** JoinableQueue: marks a task got from the queue as done. */
    taskDone() {
        call(() => this.gobject.task_done());
    }

    /**
     * JoinableQueue: waits until every item put has been marked done.
     *
     * @param {number} [timeout] ms
     * @returns {boolean}
     */
    join(timeout = -1) {
        return wait(() => this.gobject.join(timeout, null));
    }
}

/** A Queue with taskDone() and join(). */
export class JoinableQueue extends Queue {
    constructor(maxsize = 0) {
        super(maxsize, {joinable: true});
    }
}

// ---------------------------------------------------------------------------
// Pipe and Connection

/** One end of a pipe: Python's multiprocessing.connection.Connection. */
export class Connection {
    constructor(gobject) {
        this.gobject = gobject;
    }

    static _fromHandle(handle, fds) {
        if (!fds)
            throw new Error('a connection arrived without its fds');
        return new Connection(call(() => Mpg.Connection.new_from_handle(handle, fds)));
    }

    /** @param {*} value */
    send(value) {
        const fds = new Gio.UnixFDList();
        const variant = encode(value, 'value', 0, fds);
        try {
            call(() => fds.get_length() > 0
                ? this.gobject.send_with_fds(variant, fds, null)
                : this.gobject.send(variant, null));
        } finally {
            closeFdList(fds);
        }
    }

    /**
     * Receives a value, blocking; throws EOFError when the other end is
     * closed.
     *
     * @returns {*}
     */
    recv() {
        const [variant, fds] = call(() => this.gobject.recv_with_fds(null));
        try {
            return fromVariant(variant, fds);
        } finally {
            closeFdList(fds);
        }
    }

    /**
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<*>}
     */
    recvAsync(cancellable = null) {
        return promise(done => this.gobject.recv_async(cancellable,
            (obj, res) => done(() => fromVariant(obj.recv_finish(res)))));
    }

    /** @param {Uint8Array} bytes */
    sendBytes(bytes) {
        call(() => this.gobject.send_bytes(new GLib.Bytes(bytes), null));
    }

    /** @returns {Uint8Array} */
    recvBytes() {
        return call(() => this.gobject.recv_bytes(null)).toArray();
    }

    /**
     * @param {number} [timeout] ms; 0 (default) to return at once, -1 to wait
     * @returns {boolean} whether there is something to receive
     */
    poll(timeout = 0) {
        return call(() => this.gobject.poll(timeout, null));
    }

    close() {
        this.gobject.close();
    }

    /** @returns {number} */
    fileno() {
        return this.gobject.get_fd();
    }

    get closed() {
        return this.gobject.closed;
    }

    get readable() {
        return this.gobject.readable;
    }

    get writable() {
        return this.gobject.writable;
    }
}

/**
 * Two connected Connections: Python's multiprocessing.Pipe().
 *
 * @param {boolean} [duplex] false for a one-way pipe (receive on the first)
 * @returns {Connection[]}
 */
export function Pipe(duplex = true) {
    const [, first, second] = call(() => Mpg.pipe_new(duplex));
    return [new Connection(first), new Connection(second)];
}

// ---------------------------------------------------------------------------
// Pool

/**
 * A pool of worker processes (spawned gjs programs): Python's
 * multiprocessing.Pool. Async methods return Promises; the *Sync ones
 * block.
 *
 *     const pool = new Pool(2);
 *     print(await pool.map(x => x * x, [1, 2, 3]));   // 1,4,9
 *     pool.terminate();
 */
export class Pool {
    /**
     * @param {number} [processes] the number of workers (default: CPUs)
     * @param {object} [options] initializer (a task each worker runs when
     *   it starts: initializer(...initargs)), initargs (an array, which may
     *   hold Queues and Connections), maxtasksperchild, taskTimeout (ms),
     *   retries
     */
    constructor(processes = 0, {
        initializer, initargs = [], maxtasksperchild = 0, taskTimeout, retries,
    } = {}) {
        if (initializer === undefined || initializer === null) {
            this.gobject = new Mpg.Pool({
                processes: processes || 0,
                start_method: SPAWN,
                maxtasksperchild,
            });
        } else {
            if (!Array.isArray(initargs))
                throw new TypeError('a Pool\'s initargs must be an array');
            // Named before anything is made: a bad initializer throws here.
            const name = `...${taskName(initializer)}`;
            // The pool keeps these fds for every worker it starts, including
            // the ones that replace others: they are not closed here.
            const fds = new Gio.UnixFDList();
            const variant = encode(initargs, 'initargs', 0, fds);
            // No C initializer: spawned workers run the named one through
            // the task dispatcher, with the fds of the initargs' handles.
            this.gobject = call(() => Mpg.Pool.new_full(processes || 0, null, variant,
                maxtasksperchild));
            if (this.gobject.start_method !== SPAWN) {
                throw new Error('a Pool with an initializer needs the spawn start method ' +
                    '(Mpg.set_start_method() was changed)');
            }
            this.gobject.set_initializer_name(name, fds.get_length() > 0 ? fds : null);
        }
        if (taskTimeout !== undefined)
            this.gobject.task_timeout = taskTimeout;
        if (retries !== undefined)
            this.gobject.retries = retries;
        this._ids = new Map();
    }

    _id(target, spread) {
        const name = `${spread ? '...' : ''}${taskName(target)}`;
        let id = this._ids.get(name);
        if (id === undefined) {
            id = this.gobject.add_named_function(name);
            this._ids.set(name, id);
        }
        return id;
    }

    static _items(items) {
        if (!Array.isArray(items))
            items = Array.from(items);
        return encode(items, 'items', 0, null);
    }

    /**
     * Calls f(...args) in a worker.
     *
     * @returns {Promise<*>}
     */
    async apply(f, args = [], {cancellable = null} = {}) {
        const id = this._id(f, true);
        const arg = encode(args, 'args', 0, null);
        return promise(done => this.gobject.apply_async(id, arg, cancellable,
            (obj, res) => done(() => fromVariant(obj.apply_finish(res)))));
    }

    /** Calls f(...args) in a worker and waits. */
    applySync(f, args = [], {cancellable = null} = {}) {
        const id = this._id(f, true);
        const arg = encode(args, 'args', 0, null);
        return fromVariant(call(() => this.gobject.apply(id, arg, cancellable)));
    }

    async _mapAsync(f, items, spread, chunksize, cancellable) {
        const id = this._id(f, spread);
        const variant = Pool._items(items);
        return promise(done => this.gobject.map_async(id, variant, chunksize, cancellable,
            (obj, res) => done(() => fromVariant(obj.map_finish(res)))));
    }

    _mapSync(f, items, spread, chunksize, cancellable) {
        const id = this._id(f, spread);
        const variant = Pool._items(items);
        return fromVariant(call(() => this.gobject.map(id, variant, chunksize, cancellable)));
    }

    /**
     * [f(x) for x of items], computed by the workers, in order.
     *
     * @param {Function | Task | string | Array} f the task
     * @param {Iterable} items
     * @param {object} [options] chunksize, cancellable
     * @returns {Promise<Array>}
     */
    map(f, items, {chunksize = 0, cancellable = null} = {}) {
        return this._mapAsync(f, items, false, chunksize, cancellable);
    }

    /** map(), blocking. */
    mapSync(f, items, {chunksize = 0, cancellable = null} = {}) {
        return this._mapSync(f, items, false, chunksize, cancellable);
    }

    /**
     * [f(...args) for args of items].
     *
     * @returns {Promise<Array>}
     */
    starmap(f, items, {chunksize = 0, cancellable = null} = {}) {
        return this._mapAsync(f, items, true, chunksize, cancellable);
    }

    /** starmap(), blocking. */
    starmapSync(f, items, {chunksize = 0, cancellable = null} = {}) {
        return this._mapSync(f, items, true, chunksize, cancellable);
    }

    async *_iterate(f, items, chunksize, unordered) {
        const id = this._id(f, false);
        const variant = Pool._items(items);
        const it = call(() => unordered
            ? this.gobject.imap_unordered(id, variant, chunksize)
            : this.gobject.imap(id, variant, chunksize));
        for (;;) {
            // eslint-disable-next-line no-await-in-loop
            const [, value] = await promise(done => it.next_async(null,
                (obj, res) => done(() => obj.next_finish(res))));
            if (value === null)
                return;
            yield fromVariant(value);
        }
    }

    /**
     * The results of f over items, in order, as they come: an async
     * iterator (`for await (const y of pool.imap(f, items))`).
     */
    imap(f, items, {chunksize = 1} = {}) {
        return this._iterate(f, items, chunksize, false);
    }

    /** As imap(), in the order the results come. */
    imapUnordered(f, items, {chunksize = 1} = {}) {
        return this._iterate(f, items, chunksize, true);
    }

    /** No more tasks: the workers end when they are done. */
    close() {
        this.gobject.close();
    }

    /** Stops the workers at once. */
    terminate() {
        this.gobject.terminate();
    }

    /**
     * Waits for the workers to end, after close() or terminate().
     *
     * @param {number} [timeout] ms
     * @returns {boolean}
     */
    join(timeout = -1) {
        return wait(() => this.gobject.join(timeout));
    }

    /** @type {number} */
    get processes() {
        return this.gobject.processes;
    }

    /** @type {number[]} the pids of the workers */
    get workerPids() {
        return this.gobject.dup_worker_pids();
    }
}

// ---------------------------------------------------------------------------
// The worker side (mpg-worker.js)

const compiled = new Map();

function compileSource(source) {
    let f = compiled.get(source);
    if (f === undefined) {
        // Indirect eval: global scope, no variables of this module.
        f = (0, eval)(`(${source}\n)`);  // eslint-disable-line no-eval
        if (typeof f !== 'function')
            throw new TypeError(`the task source is not a function: ${source.slice(0, 80)}`);
        compiled.set(source, f);
    }
    return f;
}

// Waits for a promise while running the main context (the dynamic import of
// a task's module and async tasks need it).
function settle(context, value) {
    if (value === null || (typeof value !== 'object' && typeof value !== 'function') ||
        typeof value.then !== 'function')
        return value;
    let state = 0, result;
    Promise.resolve(value).then(v => {
        state = 1;
        result = v;
    }, e => {
        state = 2;
        result = e;
    });
    while (state === 0)
        context.iteration(true);
    if (state === 2)
        throw result;
    return result;
}

function findTask(context, name) {
    if (name.startsWith('source:'))
        return [compileSource(name.slice('source:'.length)), true];
    const hash = name.lastIndexOf('#');
    if (hash < 0) {
        throw new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
            `'${name}' is not a JavaScript task: '<module URL>#<export name>' or 'source:<function>'`);
    }
    const url = name.slice(0, hash), exportName = name.slice(hash + 1);
    let module;
    try {
        module = settle(context, import(url));
    } catch (e) {
        throw new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
            `Cannot import the task module ${url}: ${e}`);
    }
    const f = module[exportName];
    if (typeof f !== 'function') {
        throw new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
            `The module ${url} exports no function '${exportName}'`);
    }
    return [f, false];
}

function dispatch(name, arg, fdList) {
    // Async work (GIO calls, the dynamic import) is dispatched to the
    // thread-default context, and GJS's promise jobs to the default one:
    // make them the same while the task runs.
    const context = GLib.MainContext.default();
    context.push_thread_default();
    try {
        let spread = false;
        if (name.startsWith('...')) {
            spread = true;
            name = name.slice(3);
        }
        const [f, fromSource] = findTask(context, name);
        const args = fromVariant(arg, fdList);
        closeFdList(fdList);
        let result;
        try {
            result = settle(context, spread ? f(...Array.isArray(args) ? args : [args]) : f(args));
        } catch (e) {
            if (fromSource && e instanceof ReferenceError) {
                e.message += ' (a function sent as source runs in a new program without the ' +
                    'variables around it: pass what it needs as arguments, or export it from a ' +
                    'module and pass mpg.task(moduleURL, exportName))';
            }
            throw e;
        }
        return encode(result, 'result', 0, null);
    } catch (e) {
        throw errorToGError(e);
    } finally {
        context.pop_thread_default();
    }
}

/**
 * Runs this program as a spawned worker: what mpg-worker.js does. Returns
 * only when this program is not a worker.
 */
export function workerMain() {
    Mpg.set_task_dispatcher(dispatch);
    Mpg.worker_main();
}
