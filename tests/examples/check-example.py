#!/usr/bin/python3
# check-example.py: run an example program and check what it prints
#
# Usage: check-example.py hello|info|queue|queue-python|queue-js|pool|pool-js|progress|lock|shared|shared-python|shared-js PROGRAM [ARGS...]
#
# hello: the output is exactly "hello bob".
# info: a "main line" block printed by the program itself (its parent is
# this script, its pid is the program's), then a "function f" block printed
# by a child of the program, then "hello bob".
# queue: the GVariant text of [42, None, 'hello'] sent by a child.
# queue-python: Python's own text of it, [42, None, 'hello'], as the
# multiprocessing-style Python example prints it.
# pool: [1, 4, 9], the squares of [1, 2, 3] computed by a pool's workers
# (GVariant's text of an 'ai' and Python's text of a list are the same).
# pool-js: JavaScript's JSON text of it, [1,4,9].
# lock: "hello world 0" to "hello world 9", once each, in any order.
# shared: 3.1415927 (GVariant's text of it: all 17 digits) and the
# negated range(10), set by a child in a shared Value and Array
# (shared-python: Python's text; shared-js: JavaScript's).
# progress: "progress DONE/TOTAL" lines, DONE increasing up to TOTAL, then
# the sum of the squares of 1..TOTAL, then the ticks of a timer of the same
# main loop and their worst delay.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import re
import subprocess
import sys

TIMEOUT = 20


def fail(message, proc=None):
    print('FAIL:', message, file=sys.stderr)
    if proc is not None:
        print('--- stdout:\n' + proc.stdout, file=sys.stderr)
        print('--- stderr:\n' + proc.stderr, file=sys.stderr)
    sys.exit(1)


def run(argv):
    # Run with stdout buffered, as for any user whose output goes to a pipe
    # or a file: a child must not print its parent's pending output again.
    env = dict(os.environ)
    env.pop('PYTHONUNBUFFERED', None)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        proc.stdout, proc.stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.stdout, proc.stderr = proc.communicate()
        fail('timed out after %d s' % TIMEOUT, proc)
    if proc.returncode != 0:
        fail('exit status %d' % proc.returncode, proc)
    # Debug logging is welcome when asked for; otherwise a warning is a bug.
    if proc.stderr and not os.environ.get('G_MESSAGES_DEBUG'):
        fail('unexpected output on stderr', proc)
    return proc


def parse_block(lines, title, proc):
    pattern = [
        re.escape(title),
        r'module name: (\S+)',
        r'parent process: (\d+)',
        r'process id: (\d+)',
    ]
    if len(lines) < len(pattern):
        fail('the "%s" block is incomplete' % title, proc)
    groups = []
    for line, regex in zip(lines, pattern):
        match = re.fullmatch(regex, line)
        if match is None:
            fail('in the "%s" block, %r does not match %r' % (title, line, regex), proc)
        groups.extend(match.groups())
    module, ppid, pid = groups
    return module, int(ppid), int(pid)


def check_hello(argv):
    proc = run(argv)
    if proc.stdout != 'hello bob\n':
        fail('expected exactly "hello bob"', proc)


def check_info(argv):
    proc = run(argv)
    lines = proc.stdout.splitlines()
    if len(lines) != 9:
        fail('expected 9 lines, got %d' % len(lines), proc)

    module, ppid, pid = parse_block(lines[0:4], 'main line', proc)
    if ppid != os.getpid():
        fail('main line: parent process %d is not the caller %d' % (ppid, os.getpid()), proc)
    if pid != proc.pid:
        fail('main line: process id %d is not the program %d' % (pid, proc.pid), proc)

    f_module, f_ppid, f_pid = parse_block(lines[4:8], 'function f', proc)
    if f_module != module:
        fail('function f: module name %r differs from %r' % (f_module, module), proc)
    if f_ppid != pid:
        fail('function f: parent process %d is not the main process %d' % (f_ppid, pid), proc)
    if f_pid == pid:
        fail('function f: ran in the main process', proc)

    if lines[8] != 'hello bob':
        fail('expected "hello bob" last', proc)


def check_exactly(expected):
    def check(argv):
        proc = run(argv)
        if proc.stdout != expected + '\n':
            fail('expected exactly %r' % expected, proc)
    return check


def check_progress(argv):
    proc = run(argv)
    lines = proc.stdout.splitlines()
    progress = []
    while lines and lines[0].startswith('progress'):
        match = re.fullmatch(r'progress (\d+)/(\d+)', lines.pop(0))
        if match is None:
            fail('malformed progress line', proc)
        progress.append((int(match.group(1)), int(match.group(2))))
    if len(progress) < 2:
        fail('expected progress lines, got %d' % len(progress), proc)
    total = progress[0][1]
    if any(t != total for _, t in progress):
        fail('the total changes between progress lines', proc)
    done = [d for d, _ in progress]
    if any(b <= a for a, b in zip(done, done[1:])) or done[0] <= 0:
        fail('the progress counts do not increase: %r' % done, proc)
    if done[-1] != total:
        fail('the last progress line is %d/%d' % (done[-1], total), proc)

    if len(lines) != 2:
        fail('expected 2 lines after the progress lines, got %d' % len(lines), proc)
    expected = sum(i * i for i in range(1, total + 1))
    if lines[0] != 'sum %d' % expected:
        fail('expected "sum %d"' % expected, proc)
    match = re.fullmatch(r'ticks (\d+), worst delay (\d+\.\d) ms', lines[1])
    if match is None:
        fail('malformed ticks line', proc)
    if int(match.group(1)) < 1:
        fail('the timer of the main loop never ran', proc)


def check_lock(argv):
    proc = run(argv)
    lines = proc.stdout.splitlines()
    if sorted(lines) != sorted('hello world %d' % i for i in range(10)):
        fail('expected "hello world 0" to "hello world 9", one line each', proc)


CHECKS = {
    'hello': check_hello,
    'info': check_info,
    'queue': check_exactly("[<42>, <@mv nothing>, <'hello'>]"),
    'queue-python': check_exactly("[42, None, 'hello']"),
    'queue-js': check_exactly('[42,null,"hello"]'),
    'pool': check_exactly('[1, 4, 9]'),
    'pool-js': check_exactly('[1,4,9]'),
    'progress': check_progress,
    'lock': check_lock,
    'shared': check_exactly('3.1415926999999999\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]'),
    'shared-python': check_exactly('3.1415927\n[0, -1, -2, -3, -4, -5, -6, -7, -8, -9]'),
    'shared-js': check_exactly('3.1415927\n[0,-1,-2,-3,-4,-5,-6,-7,-8,-9]'),
}


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in CHECKS:
        print('usage: check-example.py %s PROGRAM [ARGS...]' % '|'.join(CHECKS), file=sys.stderr)
        sys.exit(2)
    CHECKS[sys.argv[1]](sys.argv[2:])


if __name__ == '__main__':
    main()
