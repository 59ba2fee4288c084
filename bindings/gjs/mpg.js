// mpg.js: libmpg for JavaScript (GJS), with plain values and Promises
//
// Copyright 2026 The libmpg authors
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// An ES module on top of the introspected API (gi://Mpg): Process, Queue,
// Pipe, Pool, Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition,
// Barrier, SharedMemory, Value and Array in the spelling of Python's
// multiprocessing, with plain JS values in and out and Promise-returning
// async methods. See docs/gjs.md.
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

// Under an MPI launcher (mpiexec -n N gjs -m app.js), the ranks other than
// 0 relay tasks to workers for rank 0's pools: they do it here, when the
// program imports this module, and exit when rank 0 ends; the rest of the
// program runs on rank 0 only. Anywhere else, this returns at once.
if (GLib.getenv('MPG_WORKER') === null)
    Mpg.worker_main();

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
    'objects with string keys, Uint8Array, GLib.Variant, and, in Process arguments and Pool ' +
    'initargs, Queue, Connection, Lock, RLock, Semaphore, Event, Condition, Barrier, ' +
    'SharedMemory, Value and Array objects';

// Objects that live in several processes at once (queues, pipe ends, locks,
// shared memory...) travel as multiprocessing's reduction makes them
// travel: their class has a [REDUCE](fdList, where) method that adds their
// fds to the list and returns [kind, payload], sent as the tagged value
// ('mpg:<kind>', <payload>); REBUILD[kind](payload, fdList) makes them
// again on the other side. The kinds and payloads are those of the Python
// override, so that the two can exchange these objects.
const REDUCE = Symbol('mpg.reduce');
const REBUILD = Object.create(null);

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
    const reduce = value[REDUCE];
    if (typeof reduce === 'function') {
        if (!fds) {
            throw cannotSend(value, where,
                'queues, connections, locks and the other synchronization objects, and ' +
                'shared memory can be sent as arguments of a Process, in a Pool\'s ' +
                'initargs, through a Queue, or through a Connection, not as arguments of a ' +
                'Pool\'s tasks');
        }
        const [kind, payload] = reduce.call(value, fds, where);
        return tagged(kind, payload);
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
    case 'call':
        return decode(payload, fds);
    }
    if (Object.hasOwn(REBUILD, tag)) {
        if (!fds)
            throw new Error(`a '${TAG_PREFIX}${tag}' value arrived without its fds`);
        return REBUILD[tag](payload, fds);
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

    get [Symbol.toStringTag]() {
        return this.constructor.name;
    }

    [REDUCE](fds) {
        return ['queue', call(() => this.gobject.to_handle(fds))];
    }

    /**
     * @param {*} value
     * @param {object} [options] block (default true), timeout (ms)
     */
    put(value, {block = true, timeout} = {}) {
        const fds = new Gio.UnixFDList();
        try {
            // Inside: the fds of what was encoded before a failure are closed.
            const variant = encode(value, 'value', 0, fds);
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

REBUILD.queue = (handle, fds) => new Queue(call(() => Mpg.Queue.new_from_handle(handle, fds)));

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

    get [Symbol.toStringTag]() {
        return 'Connection';
    }

    [REDUCE](fds) {
        return ['connection', call(() => this.gobject.to_handle(fds))];
    }

    /** @param {*} value */
    send(value) {
        const fds = new Gio.UnixFDList();
        try {
            const variant = encode(value, 'value', 0, fds);
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

REBUILD.connection = (handle, fds) =>
    new Connection(call(() => Mpg.Connection.new_from_handle(handle, fds)));

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
// Synchronization: Lock, RLock, Semaphore, BoundedSemaphore, Event,
// Condition, Barrier

// An object of one of the classes below around an existing object of
// gi://Mpg (one rebuilt from a handle, a condition's lock), with the fields
// that its constructor would set.
function wrapObject(Class, fields) {
    return Object.assign(Object.create(Class.prototype), fields);
}

// A timeout in milliseconds for libmpg: -1 for no limit (null, undefined,
// a negative number or Infinity), else rounded up, so that a wait never
// ends early.
function msecOf(timeout) {
    if (timeout === undefined || timeout === null)
        return -1;
    if (typeof timeout !== 'number' || Number.isNaN(timeout))
        throw new TypeError(`a timeout is a number of milliseconds, not ${shown(timeout)}`);
    if (timeout < 0 || timeout === Infinity)
        return -1;
    return Math.min(Math.ceil(timeout), 0x7FFFFFFF);
}

// The timeout of an acquire({block, timeout}), as Python's: block false
// does not wait, whatever the timeout.
function acquireMsec(block, timeout) {
    return block ? msecOf(timeout) : 0;
}

// A value in an error message: primitives as they are written.
function shown(value) {
    if (typeof value === 'string')
        return JSON.stringify(value);
    if (typeof value === 'bigint')
        return `${value}n`;
    if (typeof value === 'number' || typeof value === 'boolean' ||
        value === null || value === undefined)
        return String(value);
    return describe(value);
}

function checkCount(value, what, min = 0) {
    if (!Number.isInteger(value) || value < min || value > 0x7FFFFFFF)
        throw new RangeError(`${what} must be an integer from ${min} to 2147483647, ` +
            `not ${shown(value)}`);
    return value;
}

/**
 * A lock shared by processes: Python's multiprocessing.Lock. Any process
 * that has it (passed as a Process argument, in a Pool's initargs, or
 * through a Queue or a Connection) can acquire and release it.
 *
 *     const lock = new Lock();
 *     if (lock.acquire({timeout: 1000})) {
 *         try {
 *             change();
 *         } finally {
 *             lock.release();
 *         }
 *     }
 *
 * When the process that held the lock died holding it, the acquire that
 * takes it over succeeds and sets `ownerDied`: what the lock protects may
 * be half changed.
 */
export class Lock {
    constructor() {
        /** @type {Mpg.Lock} the object of gi://Mpg */
        this.gobject = call(() => new.target._new());
        /**
         * Whether the last acquire made through this object that succeeded
         * took the lock over from a process that died holding it.
         *
         * @type {boolean}
         */
        this.ownerDied = false;
    }

    static _new() {
        return Mpg.Lock.new();
    }

    /**
     * Acquires the lock, blocking (the main loop too): for scripts and
     * workers. In a main loop, use acquireAsync().
     *
     * @param {object} [options] block (default true; false: do not wait),
     *   timeout (ms; null or -1 for no limit), cancellable
     * @returns {boolean} true if acquired (see `ownerDied`); false if the
     *   timeout passed first or, with block false, the lock is held
     */
    acquire({block = true, timeout = null, cancellable = null} = {}) {
        const msec = acquireMsec(block, timeout);
        let died = false;
        const acquired = wait(() => {
            [, died] = this.gobject.acquire(msec, cancellable);
            return true;
        });
        if (acquired)
            this.ownerDied = died;
        return acquired;
    }

    /**
     * Acquires the lock without blocking the main loop: the wait happens
     * in a thread of its own, and the lock is held by this (the calling)
     * thread when the Promise resolves.
     *
     * @param {Gio.Cancellable} [cancellable] rejects the Promise with
     *   Gio.IOErrorEnum.CANCELLED, without the lock
     * @returns {Promise<boolean>} true (see `ownerDied`)
     */
    acquireAsync(cancellable = null) {
        return promise(done => this.gobject.acquire_async(cancellable,
            (obj, res) => done(() => {
                const [, died] = obj.acquire_finish(res);
                this.ownerDied = died;
                return true;
            })));
    }

    /**
     * Releases the lock. Throws a GLib.Error (Mpg.Error.INVALID_STATE) if
     * it is not held (Python's ValueError), or, for an RLock, not held by
     * this thread.
     */
    release() {
        call(() => this.gobject.release());
    }

    get [Symbol.toStringTag]() {
        return this.constructor.name;
    }

    [REDUCE](fds) {
        return ['lock', call(() => this.gobject.to_handle(fds))];
    }
}

/**
 * A recursive lock shared by processes: Python's multiprocessing.RLock.
 * The thread that holds it may acquire it again, and releases it as many
 * times; only that thread may release it.
 */
export class RLock extends Lock {
    static _new() {
        return Mpg.RLock.new();
    }
}

function wrapLock(gobject) {
    return wrapObject(gobject instanceof Mpg.RLock ? RLock : Lock, {gobject, ownerDied: false});
}

REBUILD.lock = (handle, fds) => wrapLock(call(() => Mpg.Lock.new_from_handle(handle, fds)));

/**
 * A semaphore shared by processes: Python's multiprocessing.Semaphore.
 * The units that a process took and did not give back are given back when
 * it dies.
 */
export class Semaphore {
    /** @param {number} [value] the number of units at first (default 1) */
    constructor(value = 1) {
        checkCount(value, 'a semaphore\'s value');
        this.gobject = call(() => new.target._new(value));
    }

    static _new(value) {
        return Mpg.Semaphore.new(value);
    }

    /**
     * Takes a unit, blocking while there is none.
     *
     * @param {object} [options] block (default true), timeout (ms),
     *   cancellable
     * @returns {boolean} true if taken; false if the timeout passed first
     *   or, with block false, there was no unit
     */
    acquire({block = true, timeout = null, cancellable = null} = {}) {
        const msec = acquireMsec(block, timeout);
        return wait(() => this.gobject.acquire(msec, cancellable));
    }

    /**
     * Takes a unit without blocking the main loop.
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<boolean>} true
     */
    acquireAsync(cancellable = null) {
        return promise(done => this.gobject.acquire_async(cancellable,
            (obj, res) => done(() => obj.acquire_finish(res))));
    }

    /**
     * Gives a unit back. Throws a GLib.Error (Mpg.Error.INVALID_STATE) for
     * a BoundedSemaphore already at its initial value.
     */
    release() {
        call(() => this.gobject.release());
    }

    /** @returns {number} the number of units available now */
    getValue() {
        return this.gobject.get_value();
    }

    get [Symbol.toStringTag]() {
        return this.constructor.name;
    }

    [REDUCE](fds) {
        return ['semaphore', call(() => this.gobject.to_handle(fds))];
    }
}

/**
 * A semaphore whose value cannot go above its initial value:
 * Python's multiprocessing.BoundedSemaphore.
 */
export class BoundedSemaphore extends Semaphore {
    static _new(value) {
        return Mpg.Semaphore.new_bounded(value);
    }
}

REBUILD.semaphore = (handle, fds) => {
    const gobject = call(() => Mpg.Semaphore.new_from_handle(handle, fds));
    return wrapObject(gobject.get_bounded() ? BoundedSemaphore : Semaphore, {gobject});
};

/** A flag that processes can wait for: Python's multiprocessing.Event. */
export class Event {
    constructor() {
        this.gobject = call(() => Mpg.Event.new());
    }

    /** Raises the flag and wakes every waiter. */
    set() {
        this.gobject.set();
    }

    /** Lowers the flag. */
    clear() {
        this.gobject.clear();
    }

    /** @returns {boolean} whether the flag is up */
    isSet() {
        return this.gobject.is_set();
    }

    /**
     * Waits until the flag is up, blocking.
     *
     * @param {number} [timeout] ms; null or -1 for no limit
     * @returns {boolean} true if the flag is up; false if the timeout
     *   passed first
     */
    wait(timeout = null) {
        const msec = msecOf(timeout);
        return wait(() => this.gobject.wait(msec, null));
    }

    /**
     * Waits until the flag is up without blocking the main loop.
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<boolean>} true
     */
    waitAsync(cancellable = null) {
        return promise(done => this.gobject.wait_async(cancellable,
            (obj, res) => done(() => obj.wait_finish(res))));
    }

    get [Symbol.toStringTag]() {
        return 'Event';
    }

    [REDUCE](fds) {
        return ['event', call(() => this.gobject.to_handle(fds))];
    }
}

REBUILD.event = (handle, fds) =>
    wrapObject(Event, {gobject: call(() => Mpg.Event.new_from_handle(handle, fds))});

/**
 * A condition variable shared by processes: Python's
 * multiprocessing.Condition. Its lock (a new RLock unless one is given)
 * must be held around wait(), waitFor() and notify().
 */
export class Condition {
    /** @param {Lock | RLock | null} [lock] the lock; null for a new RLock */
    constructor(lock = null) {
        if (lock !== null && !(lock instanceof Lock))
            throw new TypeError(`a Condition's lock is a Lock or an RLock, not ${shown(lock)}`);
        this.gobject = call(() => Mpg.Condition.new(lock?.gobject ?? null));
        this._lock = lock ?? wrapLock(this.gobject.get_lock());
    }

    /** @type {Lock | RLock} the condition's lock */
    get lock() {
        return this._lock;
    }

    /** Acquires the lock: see Lock.acquire(). */
    acquire(options = {}) {
        return this._lock.acquire(options);
    }

    /** Releases the lock. */
    release() {
        this._lock.release();
    }

    /**
     * Releases the lock, waits until notified, and takes the lock back
     * (whatever the result), blocking.
     *
     * @param {number} [timeout] ms; null or -1 for no limit
     * @returns {boolean} true if notified, false if the timeout passed
     */
    wait(timeout = null) {
        const msec = msecOf(timeout);
        return wait(() => this.gobject.wait(msec, null));
    }

    /**
     * Waits until predicate() returns a true value, blocking: predicate is
     * called with the lock held, first, then after each notification.
     *
     * @param {Function} predicate
     * @param {number} [timeout] ms, in all; null or -1 for no limit
     * @returns {*} the predicate's last result (false-like if the timeout
     *   passed first)
     */
    waitFor(predicate, timeout = null) {
        if (typeof predicate !== 'function')
            throw new TypeError(`waitFor() needs a function, not ${shown(predicate)}`);
        const msec = msecOf(timeout);
        let result, failed = false, exception;
        const check = () => {
            if (failed)
                return true;
            try {
                result = predicate();
            } catch (e) {
                // Ends the wait, and is thrown below: an exception thrown
                // into libmpg would only be printed.
                failed = true;
                exception = e;
                return true;
            }
            return Boolean(result);
        };
        const ok = wait(() => this.gobject.wait_for(check, msec, null));
        if (!ok)
            check();  // as Python: the predicate once more, after the timeout
        if (failed)
            throw exception;
        return result;
    }

    /**
     * Waits until notified without blocking the main loop. The lock,
     * which this thread must hold, is released at once; it is held again
     * by this thread when the Promise settles.
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<boolean>} true
     */
    waitAsync(cancellable = null) {
        return promise(done => this.gobject.wait_async(cancellable,
            (obj, res) => done(() => obj.wait_finish(res))));
    }

    /**
     * Wakes up to n waiters (those that waited longest).
     *
     * @param {number} [n] default 1
     */
    notify(n = 1) {
        checkCount(n, 'notify()\'s n');
        call(() => this.gobject.notify(n));
    }

    /** Wakes every waiter. */
    notifyAll() {
        call(() => this.gobject.notify_all());
    }

    get [Symbol.toStringTag]() {
        return 'Condition';
    }

    [REDUCE](fds) {
        return ['condition', call(() => this.gobject.to_handle(fds))];
    }
}

REBUILD.condition = (handle, fds) => {
    const gobject = call(() => Mpg.Condition.new_from_handle(handle, fds));
    return wrapObject(Condition, {gobject, _lock: wrapLock(gobject.get_lock())});
};

/**
 * A barrier for a number of parties in any processes: Python's
 * multiprocessing.Barrier.
 *
 * The action, if given, is called (with no arguments, synchronously) by
 * the last party to arrive, in whatever process that is, before the
 * parties are released. It travels with the barrier as a Process's target
 * does: a function is called as it is here, and sent as its source text
 * (so it must be self-contained there); a task (mpg.task(url, name)) is
 * looked up in each process, its module imported as soon as the barrier
 * is made or arrives. JavaScript runs only in the main thread, so a
 * barrier with an action is waited for with wait(), not waitAsync().
 */
export class Barrier {
    /**
     * @param {number} parties the number of parties, at least 1
     * @param {object} [options] action (a task), timeout (ms: the default
     *   of wait(); null for no limit)
     */
    constructor(parties, {action = null, timeout = null} = {}) {
        checkCount(parties, 'a barrier\'s number of parties', 1);
        // The action: a function, called here and sent as source text, or
        // a task's name, looked up (_lookup) and sent as it is.
        this._action = null;
        this._actionName = '';
        this._lookup = null;
        if (typeof action === 'function') {
            this._action = action;
        } else if (action !== null) {
            this._actionName = taskName(action);
            this._lookup = lookUpTask(this._actionName);
        }
        this.gobject = call(() => Mpg.Barrier.new(parties, msecOf(timeout)));
    }

    _actionFunction() {
        if (this._action !== null)
            return this._action;
        if (this._lookup === null)
            return null;
        return call(() => lookedUp(this._lookup, 'the barrier\'s action'));
    }

    /**
     * Arrives at the barrier and waits for the other parties, blocking. A
     * timeout breaks the barrier, as in Python.
     *
     * @param {number} [timeout] ms; null or -1 for the barrier's timeout
     * @returns {number} this party's index, from 0 to parties - 1; throws
     *   a GLib.Error (Mpg.Error.BROKEN_BARRIER) if the barrier is or
     *   becomes broken, or the action's error if it ran here and threw
     */
    wait(timeout = null) {
        const msec = msecOf(timeout);
        const action = this._actionFunction();
        if (action !== null) {
            // Set for this wait only, which runs in this (the main) thread:
            // libmpg calls the action in the thread of the last party.
            this.gobject.set_action(() => {
                try {
                    action();
                    return true;
                } catch (e) {
                    throw errorToGError(e);
                }
            });
        }
        try {
            return call(() => this.gobject.wait(msec, null));
        } finally {
            if (action !== null)
                this.gobject.set_action(null);
        }
    }

    /**
     * Arrives at the barrier without blocking the main loop (the
     * barrier's timeout applies; cancelling breaks the barrier).
     *
     * @param {Gio.Cancellable} [cancellable]
     * @returns {Promise<number>} this party's index
     */
    waitAsync(cancellable = null) {
        if (this._action !== null || this._actionName) {
            return Promise.reject(new Error('a Barrier with an action is waited for with ' +
                'wait(): its action is JavaScript, which cannot run in the thread where ' +
                'waitAsync() waits'));
        }
        return promise(done => this.gobject.wait_async(cancellable,
            (obj, res) => done(() => obj.wait_finish(res))));
    }

    /** Breaks the barrier: waits in progress and later ones throw. */
    abort() {
        this.gobject.abort();
    }

    /** Returns the barrier to its first state (waits in progress throw). */
    reset() {
        this.gobject.reset();
    }

    /** @type {number} */
    get parties() {
        return this.gobject.get_parties();
    }

    /** @type {number} the number of parties waiting now */
    get nWaiting() {
        return this.gobject.get_n_waiting();
    }

    /** @type {boolean} */
    get broken() {
        return this.gobject.get_broken();
    }

    /** @type {number | null} the default timeout of wait(), in ms */
    get timeout() {
        const msec = this.gobject.get_timeout();
        return msec < 0 ? null : msec;
    }

    get [Symbol.toStringTag]() {
        return 'Barrier';
    }

    [REDUCE](fds, where) {
        let name = this._actionName;
        if (this._action !== null) {
            try {
                name = taskName(this._action);
            } catch (e) {
                throw cannotSend(this, where, `its action cannot be sent: ${e.message}`);
            }
        }
        return ['barrier', GLib.Variant.new_tuple([
            GLib.Variant.new_variant(call(() => this.gobject.to_handle(fds))),
            GLib.Variant.new_string(name),
        ])];
    }
}

REBUILD.barrier = (payload, fds) => {
    const handle = payload.get_child_value(0).get_variant();
    const name = payload.get_child_value(1).get_string()[0];
    return wrapObject(Barrier, {
        gobject: call(() => Mpg.Barrier.new_from_handle(handle, fds)),
        _action: null,
        _actionName: name,
        _lookup: name ? lookUpTask(name) : null,
    });
};

// ---------------------------------------------------------------------------
// Shared memory: SharedMemory, Value, Array

// Whether GLib.Bytes.toArray() gives a Uint8Array over the bytes' own
// memory (GJS up to 1.80) rather than a copy (GJS 1.82 and later): then,
// and only then, JavaScript can see the shared mapping itself.
let bytesArraysShare = null;

/**
 * Whether this GJS lets JavaScript see shared memory in place
 * (SharedMemory.buf, and getObj() of a Value or an Array): true up to GJS
 * 1.80, false from 1.82, whose GLib.Bytes.toArray() copies.
 *
 * @returns {boolean}
 */
export function hasSharedMemoryViews() {
    if (bytesArraysShare === null) {
        const bytes = new GLib.Bytes(new Uint8Array(1));
        bytes.toArray()[0] = 1;
        // get_data() copies the GBytes' content out: it shows the write
        // only if toArray() wrote into the GBytes' own memory.
        bytesArraysShare = bytes.get_data()?.[0] === 1;
    }
    return bytesArraysShare;
}

// A Uint8Array over the mapping of an Mpg.SharedMemory, without a copy.
// It keeps the GBytes, and so the object and its mapping, alive.
function mappingOf(memory, what) {
    if (!hasSharedMemoryViews()) {
        throw new Error(`${what} is not available: this version of GJS copies a GLib.Bytes ` +
            'into a new Uint8Array, so JavaScript cannot see shared memory in place; use ' +
            'SharedMemory.read() and write(), or the get() and set() of a Value or an Array');
    }
    return memory.get_bytes().toArray();
}

function checkRange(offset, length, size) {
    if (!Number.isInteger(offset) || offset < 0 || offset > size)
        throw new RangeError(`the offset ${shown(offset)} is not within the ${size} bytes`);
    if (!Number.isInteger(length) || length < 0 || offset + length > size) {
        throw new RangeError(`${shown(length)} bytes at ${offset} are not within the ` +
            `${size} bytes`);
    }
}

function bytesOfView(data) {
    if (data instanceof Uint8Array)
        return data;
    if (ArrayBuffer.isView(data))
        return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (data instanceof ArrayBuffer)
        return new Uint8Array(data);
    throw new TypeError(`write() takes a Uint8Array, another typed array or an ArrayBuffer, ` +
        `not ${shown(data)}`);
}

// The memfd of an Mpg.SharedMemory, opened again: its reads and writes go
// to the same pages as the mappings of every process.
function memoryFile(memory) {
    return Gio.File.new_for_path(`/proc/self/fd/${memory.get_fd()}`);
}

/**
 * A block of memory shared by processes: Python's
 * multiprocessing.shared_memory.SharedMemory. It is freed when no process
 * has it any longer (there is no unlink()).
 *
 *     const shm = new SharedMemory(4096);
 *     shm.buf[0] = 1;                       // the memory itself
 *     shm.write(new Uint8Array([1, 2]), 8); // copies in
 *     shm.read(8, 2);                       // copies out: Uint8Array [1, 2]
 */
export class SharedMemory {
    /**
     * @param {number} size the size in bytes, not 0
     * @param {object} [options] name: a label (the memfd's name, for
     *   diagnostics)
     */
    constructor(size, {name = null} = {}) {
        this._buf = null;
        if (!Number.isSafeInteger(size) || size < 0)
            throw new RangeError(`a shared memory's size is a number of bytes, not ${shown(size)}`);
        this.gobject = call(() => Mpg.SharedMemory.new(name === null ? null : String(name), size));
    }

    /** @type {string} */
    get name() {
        return this.gobject.get_name();
    }

    /** @type {number} the size in bytes */
    get size() {
        return this.gobject.get_size();
    }

    /**
     * The memory itself, as a Uint8Array (no copy): what this process
     * writes there, every process that has the memory reads. Throws with
     * GJS 1.82 and later, which cannot show it (see docs/gjs.md): use
     * read() and write() there.
     *
     * @type {Uint8Array}
     */
    get buf() {
        if (this._buf === null)
            this._buf = mappingOf(this.gobject, 'SharedMemory.buf');
        return this._buf;
    }

    /**
     * Copies bytes out of the memory.
     *
     * @param {number} [offset] default 0
     * @param {number} [length] default: up to the end
     * @returns {Uint8Array} a new array
     */
    read(offset = 0, length = undefined) {
        const size = this.size;
        length ??= Number.isInteger(offset) ? size - offset : 0;
        checkRange(offset, length, size);
        const out = new Uint8Array(length);
        if (length === 0)
            return out;
        const stream = call(() => memoryFile(this.gobject).read(null));
        try {
            call(() => stream.seek(offset, GLib.SeekType.SET, null));
            for (let done = 0; done < length;) {
                const chunk = call(() => stream.read_bytes(length - done, null)).toArray();
                if (chunk.length === 0)
                    throw new Error('the shared memory ended early');
                out.set(chunk, done);
                done += chunk.length;
            }
        } finally {
            stream.close(null);
        }
        return out;
    }

    /**
     * Copies bytes into the memory.
     *
     * @param {Uint8Array | ArrayBufferView | ArrayBuffer} data
     * @param {number} [offset] where, in bytes; default 0
     */
    write(data, offset = 0) {
        const bytes = bytesOfView(data);
        checkRange(offset, bytes.length, this.size);
        if (bytes.length === 0)
            return;
        const stream = call(() => memoryFile(this.gobject).open_readwrite(null));
        try {
            call(() => stream.seek(offset, GLib.SeekType.SET, null));
            call(() => stream.get_output_stream().write_all(bytes, null));
        } finally {
            stream.close(null);
        }
    }

    get [Symbol.toStringTag]() {
        return 'SharedMemory';
    }

    [REDUCE](fds) {
        return ['shared_memory', call(() => this.gobject.to_handle(fds))];
    }
}

REBUILD.shared_memory = (handle, fds) => wrapObject(SharedMemory, {
    gobject: call(() => Mpg.SharedMemory.new_from_handle(handle, fds)),
    _buf: null,
});

// The typed arrays over the elements of each typecode (C types on Linux,
// 64-bit: long is 8 bytes, wchar_t 4).
const TYPED_ARRAY_OF = {
    'c': Uint8Array, 'b': Int8Array, 'B': Uint8Array, 'h': Int16Array, 'H': Uint16Array,
    'i': Int32Array, 'I': Uint32Array, 'l': BigInt64Array, 'L': BigUint64Array,
    'q': BigInt64Array, 'Q': BigUint64Array, 'f': Float32Array, 'd': Float64Array,
    'u': Uint32Array, '?': Uint8Array,
};

// The range of each integer GVariant type of an element.
const INTEGER_RANGE = {
    'y': [0n, 255n], 'n': [-32768n, 32767n], 'q': [0n, 65535n],
    'i': [-(2n ** 31n), 2n ** 31n - 1n], 'u': [0n, 2n ** 32n - 1n],
    'x': [INT64_MIN, INT64_MAX], 't': [0n, 2n ** 64n - 1n],
};

function outOfRange(value, typecode) {
    return new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.INVALID_ARGUMENT,
        `${value} is out of range for typecode '${typecode}'`);
}

// Checks a JavaScript value for an element of GVariant type t (of the
// typecode): the value to store, or throws as libmpg would (a TypeError
// for a value of the wrong kind).
function elementValue(t, typecode, value) {
    switch (t) {
    case 'b':
        if (typeof value !== 'boolean' && typeof value !== 'number')
            break;
        return Boolean(value);
    case 'd':
        if (typeof value !== 'number')
            break;
        return value;
    case 's':
        if (typeof value !== 'string')
            break;
        return value;
    default: {
        if (!(typeof value === 'bigint' || Number.isInteger(value)))
            break;
        const [min, max] = INTEGER_RANGE[t];
        const big = BigInt(value);
        if (big < min || big > max)
            throw outOfRange(value, typecode);
        return t === 'x' || t === 't' ? big : Number(big);
    }
    }
    throw new TypeError(`${shown(value)} cannot be an element of typecode '${typecode}' ` +
        `(${t === 'b' ? 'a boolean' : t === 'd' ? 'a number' : t === 's'
            ? 'a string of one character' : 'an integer'})`);
}

function elementVariant(t, value) {
    switch (t) {
    case 'b':
        return GLib.Variant.new_boolean(value);
    case 'y':
        return GLib.Variant.new_byte(value);
    case 'n':
        return GLib.Variant.new_int16(value);
    case 'q':
        return GLib.Variant.new_uint16(value);
    case 'i':
        return GLib.Variant.new_int32(value);
    case 'u':
        return GLib.Variant.new_uint32(value);
    case 'x':
        return fromTyped('x', BigInt64Array.of(value));
    case 't':
        return fromTyped('t', BigUint64Array.of(value));
    case 'd':
        return GLib.Variant.new_double(value);
    }
    return GLib.Variant.new_string(value);
}

function elementsVariant(t, values) {
    switch (t) {
    case 's':
        return GLib.Variant.new_strv(values);
    case 'b':
        return fromTyped('ab', Uint8Array.from(values, x => x ? 1 : 0));
    case 'd':
        return fromTyped('ad', Float64Array.from(values));
    }
    const Typed = {
        'y': Uint8Array, 'n': Int16Array, 'q': Uint16Array, 'i': Int32Array,
        'u': Uint32Array, 'x': BigInt64Array, 't': BigUint64Array,
    }[t];
    return fromTyped(`a${t}`, Typed.from(values));
}

function makeArray(typecode, length, lock) {
    if (typeof typecode !== 'string')
        throw new TypeError(`a typecode is a string ('i', 'd', ...), not ${shown(typecode)}`);
    if (lock === true)
        return call(() => Mpg.Array.new(typecode, length));
    if (lock === false || lock === null)
        return call(() => Mpg.Array.new_raw(typecode, length));
    if (lock instanceof Lock)
        return call(() => Mpg.Array.new_with_lock(typecode, length, lock.gobject));
    throw new TypeError(`the lock of a shared value is true, false, a Lock or an RLock, not ${
        shown(lock)}`);
}

// What Value and Array share: elements of one C type in shared memory,
// read and written through GVariants, and perhaps a lock.
class SharedElements {
    // lock: as the constructors' option (true, false or a Lock)
    _setUp(gobject, lock) {
        this.gobject = gobject;
        this._type = gobject.get_item_type().dup_string();
        // The JavaScript object of the lock: the one given, or made on
        // first use.
        this._lock = lock instanceof Lock ? lock : null;
        this._synchronized = lock !== false && lock !== null;
    }

    /** @type {string} the typecode ('i', 'd', ...) */
    get typecode() {
        return this.gobject.get_typecode();
    }

    _index(index) {
        if (!Number.isInteger(index))
            throw new TypeError(`an index is an integer, not ${shown(index)}`);
        const length = this.gobject.get_length();
        const i = index < 0 ? index + length : index;
        if (i < 0 || i >= length)
            throw new RangeError(`the index ${index} is out of range (length ${length})`);
        return i;
    }

    _get(index) {
        return decode(this.gobject.get(this._index(index)), null);
    }

    _set(index, value) {
        const i = this._index(index);
        const variant = elementVariant(this._type,
            elementValue(this._type, this.typecode, value));
        call(() => this.gobject.set(i, variant));
    }

    /**
     * The lock that guards the elements (an RLock unless another was
     * given), as Python's get_lock(): hold it around a change that reads
     * and writes (`v.value += 1`). No method takes it by itself.
     *
     * @returns {Lock | RLock | null} null for a raw value or array
     */
    getLock() {
        if (!this._synchronized)
            return null;
        if (this._lock === null) {
            const gobject = this.gobject.get_lock();
            this._lock = gobject ? wrapLock(gobject) : null;
        }
        return this._lock;
    }

    /**
     * The elements themselves, as a typed array over the shared memory
     * (no copy): Int32Array for 'i', Float64Array for 'd', BigInt64Array
     * for 'q' and 'l', Uint32Array (code points) for 'u', Uint8Array for
     * 'c', 'B' and '?'... As Python's get_obj(). Not available with GJS
     * 1.82 and later (see SharedMemory.buf).
     *
     * @returns {TypedArray}
     */
    getObj() {
        const Typed = TYPED_ARRAY_OF[this.typecode];
        if (Typed.BYTES_PER_ELEMENT !== this.gobject.get_item_size())
            throw new Error(`the elements of typecode '${this.typecode}' have no typed array here`);
        const bytes = mappingOf(this.gobject.get_memory(), 'getObj()');
        return new Typed(bytes.buffer, bytes.byteOffset, this.gobject.get_length());
    }

    get [Symbol.toStringTag]() {
        return this instanceof Value ? 'Value' : 'Array';
    }

    [REDUCE](fds) {
        const isValue = this instanceof Value;
        return ['sharedctypes', GLib.Variant.new_tuple([
            GLib.Variant.new_string(isValue ? 'value' : 'array'),
            GLib.Variant.new_string(''),
            GLib.Variant.new_uint64(isValue ? 0 : this.gobject.get_length()),
            GLib.Variant.new_boolean(this._synchronized),
            GLib.Variant.new_variant(call(() => this.gobject.to_handle(fds))),
        ])];
    }
}

/**
 * A number (or boolean, or character) in shared memory: Python's
 * multiprocessing.Value, read and written as `v.value`.
 *
 *     const counter = new Value('i', 0);
 *     const lock = counter.getLock();
 *     lock.acquire();
 *     counter.value += 1;
 *     lock.release();
 */
export class Value extends SharedElements {
    /**
     * @param {string} typecode 'i', 'd', ... (see docs/gjs.md)
     * @param {*} [value] the first value (default: 0, false or '')
     * @param {object} [options] lock: true (a new RLock, the default),
     *   false (none: Python's RawValue), or a Lock or RLock
     */
    constructor(typecode, value = undefined, {lock = true} = {}) {
        super();
        this._setUp(makeArray(typecode, 1, lock), lock);
        if (value !== undefined)
            this.value = value;
    }

    /**
     * @type {*} the value: a number, a bigint past 2^53 ('q', 'Q', 'l',
     *   'L'), a boolean ('?') or a string of one character ('u')
     */
    get value() {
        return this._get(0);
    }

    set value(value) {
        this._set(0, value);
    }
}

/**
 * An array of numbers (or booleans, or characters) in shared memory:
 * Python's multiprocessing.Array. Imported as mpg.Array (within the module
 * it is SharedArray, so as not to hide JavaScript's Array).
 *
 *     const a = new mpg.Array('d', [1, 2, 3]);
 *     a.set(0, 0.5);
 *     a.get(-1);     // 3
 *     a.toArray();   // [0.5, 2, 3]
 */
export class SharedArray extends SharedElements {
    /**
     * @param {string} typecode 'i', 'd', ... (see docs/gjs.md)
     * @param {number | Iterable} sizeOrInitializer the length, or the
     *   elements
     * @param {object} [options] lock: true (a new RLock, the default),
     *   false (none: Python's RawArray), or a Lock or RLock
     */
    constructor(typecode, sizeOrInitializer, {lock = true} = {}) {
        super();
        let values = null, length;
        if (typeof sizeOrInitializer === 'number') {
            if (!Number.isSafeInteger(sizeOrInitializer) || sizeOrInitializer < 0)
                throw new RangeError(`an array's length is an integer, not ${sizeOrInitializer}`);
            length = sizeOrInitializer;
        } else if (sizeOrInitializer !== null && sizeOrInitializer !== undefined &&
            typeof sizeOrInitializer[Symbol.iterator] === 'function') {
            values = Array.from(sizeOrInitializer);
            length = values.length;
        } else {
            throw new TypeError('an Array needs a length or the elements, not ' +
                `${shown(sizeOrInitializer)}`);
        }
        this._setUp(makeArray(typecode, length, lock), lock);
        if (values !== null && length > 0)
            this.setValues(values);
    }

    /** @type {number} the number of elements */
    get length() {
        return this.gobject.get_length();
    }

    /**
     * @param {number} index negative from the end, as in Python
     * @returns {*} the element
     */
    get(index) {
        return this._get(index);
    }

    /**
     * @param {number} index negative from the end, as in Python
     * @param {*} value the new element; one that does not fit the
     *   typecode throws a GLib.Error (Gio.IOErrorEnum.INVALID_ARGUMENT)
     */
    set(index, value) {
        this._set(index, value);
    }

    /** @returns {Array} a copy of the elements: Python's `a[:]` */
    toArray() {
        return Array.from(decode(this.gobject.to_variant(), null));
    }

    /**
     * Writes values to the first elements (Python's
     * `a[:len(values)] = values`); all or nothing.
     *
     * @param {Iterable} values at most length of them
     */
    setValues(values) {
        const type = this._type, typecode = this.typecode;
        const checked = Array.from(values, v => elementValue(type, typecode, v));
        call(() => this.gobject.set_from_variant(elementsVariant(type, checked)));
    }

    [Symbol.iterator]() {
        return this.toArray()[Symbol.iterator]();
    }
}

export {SharedArray as Array};

REBUILD.sharedctypes = (payload, fds) => {
    const [kind, name, count, synchronized] = [0, 1, 2, 3].map(i =>
        decode(payload.get_child_value(i), null));
    if (name) {
        throw new TypeError(`a shared value of the ctypes type ${name} cannot be used from ` +
            'JavaScript: only Values and Arrays of a typecode can');
    }
    const gobject = call(() => Mpg.Array.new_from_handle(
        payload.get_child_value(4).get_variant(), fds));
    const length = gobject.get_length();
    if (kind === 'value' ? length !== 1 : length !== Number(count))
        throw new Error(`a shared ${kind} does not fit the memory that came with it`);
    if (synchronized && !gobject.get_lock())
        throw new Error(`a synchronized shared ${kind} came without its lock`);
    const object = Object.create((kind === 'value' ? Value : SharedArray).prototype);
    object._setUp(gobject, synchronized);
    return object;
};

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
     *   retries, backend ('local', 'mpi' or 'mpi-spawn'; by default MPI
     *   ranks under an MPI launcher, or the MPG_POOL_BACKEND environment
     *   variable)
     */
    constructor(processes = 0, {
        initializer, initargs = [], maxtasksperchild = 0, taskTimeout, retries, backend,
    } = {}) {
        const backends = {
            auto: Mpg.PoolBackend.AUTO, local: Mpg.PoolBackend.LOCAL,
            mpi: Mpg.PoolBackend.MPI, 'mpi-spawn': Mpg.PoolBackend.MPI_SPAWN,
        };
        if (backend !== undefined && !(backend in backends))
            throw new TypeError(`unknown pool backend ${backend}: local, mpi or mpi-spawn`);
        if (initializer === undefined || initializer === null) {
            this.gobject = new Mpg.Pool({
                processes: processes || 0,
                start_method: SPAWN,
                maxtasksperchild,
                backend: backends[backend ?? 'auto'],
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
            this.gobject = new Mpg.Pool({
                processes: processes || 0,
                maxtasksperchild,
                initargs: variant,
                backend: backends[backend ?? 'auto'],
            });
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

function splitTaskName(name) {
    const hash = name.lastIndexOf('#');
    if (hash < 0) {
        throw new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
            `'${name}' is not a JavaScript task: '<module URL>#<export name>' or 'source:<function>'`);
    }
    return [name.slice(0, hash), name.slice(hash + 1)];
}

function cannotImport(url, e) {
    return new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
        `Cannot import the task module ${url}: ${e}`);
}

function exportOf(module, url, exportName) {
    const f = module[exportName];
    if (typeof f !== 'function') {
        throw new GLib.Error(MPG_ERROR, Mpg.Error.UNKNOWN_TASK,
            `The module ${url} exports no function '${exportName}'`);
    }
    return f;
}

function findTask(context, name) {
    if (name.startsWith('source:'))
        return [compileSource(name.slice('source:'.length)), true];
    const [url, exportName] = splitTaskName(name);
    let module;
    try {
        module = settle(context, import(url));
    } catch (e) {
        throw cannotImport(url, e);
    }
    return [exportOf(module, url, exportName), false];
}

// Tasks looked up without blocking (a barrier's action): a module is
// imported in the background, as the import completes only when the main
// context runs, and in a promise job GJS runs no nested ones, so that a
// blocking wait for it there would never end. Workers wait for these
// imports before they run a task (dispatch()).
const pendingLookups = new Set();

function lookUpTask(name) {
    const lookup = {func: null, error: null, done: null};
    try {
        if (name.startsWith('source:')) {
            lookup.func = compileSource(name.slice('source:'.length));
            return lookup;
        }
        const [url, exportName] = splitTaskName(name);
        lookup.done = import(url).then(module => {
            try {
                lookup.func = exportOf(module, url, exportName);
            } catch (e) {
                lookup.error = e;
            }
        }, e => {
            lookup.error = cannotImport(url, e);
        }).finally(() => {
            pendingLookups.delete(lookup.done);
            lookup.done = null;
        });
        pendingLookups.add(lookup.done);
    } catch (e) {
        lookup.error = e;
    }
    return lookup;
}

// The function of a lookUpTask(), running the main context for a while if
// its module is still being imported.
function lookedUp(lookup, what) {
    if (lookup.done !== null) {
        const context = GLib.MainContext.default();
        const deadline = GLib.get_monotonic_time() + 2000000;
        while (lookup.done !== null && GLib.get_monotonic_time() < deadline) {
            if (!context.iteration(false))
                GLib.usleep(1000);
        }
        if (lookup.done !== null) {
            throw new Error(`the module of ${what} is still being imported, and cannot be ` +
                'while a promise job runs: let the main loop run (await something) before ' +
                'waiting, or give it as a self-contained function');
        }
    }
    if (lookup.error !== null)
        throw lookup.error;
    return lookup.func;
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
        for (const done of [...pendingLookups])
            settle(context, done);
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
