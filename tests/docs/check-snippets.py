#!/usr/bin/python3
# check-snippets.py: check the code blocks of the Markdown pages in docs/
#
# Usage: check-snippets.py --build BUILDDIR --source SRCDIR [PAGE.md...]
#
# Run it with the Python that has PyGObject (/usr/bin/python3 on Debian):
# the Python programs of the pages run with the same interpreter. Without
# PAGE arguments it checks every SRCDIR/docs/*.md.
#
# Every fenced block in c, python, js, javascript, vala, sh or console must
# follow a marker, an HTML comment on the line just before its opening fence:
#
#   <!-- snippet: program NAME -->     a whole program (C, Python, GJS, Vala):
#       built without warnings and run in a temporary directory, where it
#       must succeed and write nothing on stderr; when the next block (after
#       blank lines only) is an `output` block, what the program prints on
#       its stdout must be that block exactly. NAME is unique in the page.
#   <!-- snippet: fragment -->         part of a program: the libmpg names it
#       uses (C: mpg_*, MPG_*, Mpg*; the others: Mpg.X, and Mpg.X.Y for the
#       values of an enumeration; GJS: mpg.X; Python: the names imported
#       from gi.repository.Mpg) must exist in the built GIR, in the Python
#       override (its __all__) or in the GJS module (its exports).
#   <!-- snippet: shell -->            commands run with `sh -e` in BUILDDIR.
#       A block written as a session ("$ command" lines, each followed by
#       what it prints) runs its commands and must print the rest exactly.
#   <!-- snippet: elsewhere REASON --> cannot run here; listed with REASON.
#
# Every run has the environment of the uninstalled build (as the test suite
# sets it: tests/meson.build, tests/mpi/meson.build) and a time limit, and
# whatever it leaves running is killed. A GJS program imports the installed
# module by its URL (file://<datadir>/libmpg-1/gjs/mpg.js); it is given the
# source tree's bindings/gjs/mpg.js instead.
#
# The output is TAP: one test per block, "page.md:LINE KIND [NAME]", LINE
# being the line of the opening fence.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import argparse
import ast
import glob
import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

RUN_TIMEOUT = 30
# Compiling is not running the snippet, but a stuck compiler must not hold
# the suite either.
BUILD_TIMEOUT = 60

# The languages that need a marker, and what the checker calls them.
LANGUAGES = {
    'c': 'c',
    'python': 'python',
    'js': 'js',
    'javascript': 'js',
    'vala': 'vala',
    'sh': 'sh',
    'console': 'sh',
}

# Which markers fit which languages.
KINDS = {
    'program': {'c', 'python', 'js', 'vala'},
    'fragment': {'c', 'python', 'js', 'vala'},
    'shell': {'sh'},
    'elsewhere': set(LANGUAGES.values()),
}

MARKER = re.compile(r'^<!--\s*snippet:\s*(\S+)(?:\s+(.*?))?\s*-->\s*$')
ANY_MARKER = re.compile(r'<!--\s*snippet\b')
FENCE_OPEN = re.compile(r'^( {0,3})(`{3,}|~{3,})(.*)$')
PROGRAM_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')

# The variables tests/mpi/meson.build gives the MPI tests: root may run
# Open MPI, more ranks than cores, no binding of ranks to cores, and TCP on
# the loopback only.
MPI_ENV = {
    'OMPI_ALLOW_RUN_AS_ROOT': '1',
    'OMPI_ALLOW_RUN_AS_ROOT_CONFIRM': '1',
    'OMPI_MCA_rmaps_base_oversubscribe': '1',
    'OMPI_MCA_hwloc_base_binding_policy': 'none',
    'OMPI_MCA_mpi_yield_when_idle': '1',
    'OMPI_MCA_btl_tcp_if_include': 'lo',
    'OMPI_MCA_oob_tcp_if_include': 'lo',
}
USES_MPI = re.compile(r'\bmpi(?:run|exec)\b|\bsrun\b|mpi-spawn|MPG_POOL_BACKEND|BACKEND_MPI|'
                      r'\bbackend\s*[=:]')

GIR_NS = {
    'core': 'http://www.gtk.org/introspection/core/1.0',
    'c': 'http://www.gtk.org/introspection/c/1.0',
    'glib': 'http://www.gtk.org/introspection/glib/1.0',
}

INSTALLED_GJS_MODULE = re.compile(
    r'''(['"])file://[^'"]*/libmpg-1/gjs/(mpg(?:-worker)?\.js)\1''')


class Skip(Exception):
    """The block cannot be checked with what this machine has."""


class Failure(Exception):
    def __init__(self, message, details=''):
        super().__init__(message)
        self.details = details


class Block:
    def __init__(self, page, line, language, text, marker_line):
        self.page = page
        self.line = line            # of the opening fence, from 1
        self.language = language    # the info string's first word, lower case
        self.text = text
        self.marker_line = marker_line
        self.kind = None
        self.argument = None
        self.output = None
        self.problem = None

    @property
    def where(self):
        return '%s:%d' % (os.path.basename(self.page), self.line)


def parse_page(path):
    """The fenced blocks of a page, and the problems of its markers."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')

    fences = []     # (block, index of the line after its closing fence)
    inside = set()
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if match is None or (match.group(2)[0] == '`' and '`' in match.group(3)):
            i += 1
            continue
        indent, fence, info = match.groups()
        closing = re.compile(r'^ {0,3}%s{%d,}\s*$' % (re.escape(fence[0]), len(fence)))
        start = i
        body = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            # Content lines lose as much indentation as the fence had.
            body.append(line[min(len(indent), len(line) - len(line.lstrip(' '))):])
            i += 1
        i += 1
        inside.update(range(start, min(i, len(lines))))
        words = info.split()
        language = words[0].lower() if words else ''
        text = ''.join(line + '\n' for line in body)
        fences.append((Block(path, start + 1, language, text, start - 1), i))

    problems = []
    names = set()
    blocks = []
    fence_starts = {block.line - 1 for block, _ in fences}
    for index, line in enumerate(lines):
        if index in inside or not ANY_MARKER.search(line):
            continue
        if MARKER.match(line) is None:
            problems.append((index + 1, 'malformed snippet marker: %s' % line.strip()))
        elif index + 1 not in fence_starts:
            problems.append((index + 1, 'snippet marker not on the line just before a code block'))

    for n, (block, end) in enumerate(fences):
        marker = MARKER.match(lines[block.marker_line]) if block.marker_line >= 0 else None
        if marker is not None:
            block.kind, block.argument = marker.group(1), marker.group(2)
        if n + 1 < len(fences):
            following, _ = fences[n + 1]
            if (following.language == 'output'
                    and all(not line.strip() for line in lines[end:following.line - 1])):
                block.output = following.text
        if block.kind == 'program':
            name = block.argument
            if name and name in names:
                block.problem = 'program name %r used twice in the page' % name
            names.add(name)
        blocks.append(block)
    return blocks, problems


# ---------------------------------------------------------------------------
# The names a fragment may use


class Names:
    def __init__(self, build, source):
        self.gir_path = os.path.join(build, 'libmpg', 'Mpg-1.0.gir')
        self.have_gir = os.path.exists(self.gir_path)
        self.c = set()
        self.top = set()            # Mpg.X
        self.members = {}           # enumeration: {VALUE}
        if self.have_gir:
            self._read_gir()
        self._read_headers(source, build)
        self.python = self._read_python_override(
            os.path.join(source, 'bindings', 'python', 'gi', 'overrides', 'Mpg.py'))
        self.gjs = self._read_gjs_module(os.path.join(source, 'bindings', 'gjs', 'mpg.js'))

    def _read_gir(self):
        root = ElementTree.parse(self.gir_path).getroot()
        namespace = root.find('core:namespace', GIR_NS)
        c_identifier = '{%s}identifier' % GIR_NS['c']
        c_type = '{%s}type' % GIR_NS['c']
        get_type = '{%s}get-type' % GIR_NS['glib']
        for element in namespace.iter():
            for attribute in (c_identifier, c_type):
                value = element.get(attribute)
                if value:
                    self.c.add(value.rstrip('*'))
            if element.get(get_type):
                self.c.add(element.get(get_type))
        for element in namespace:
            name = element.get('name')
            if name is None:
                continue
            self.top.add(name)
            tag = element.tag.split('}')[1]
            if tag in ('enumeration', 'bitfield'):
                self.members[name] = {member.get('name').upper()
                                      for member in element.findall('core:member', GIR_NS)}
            # The macros G_DECLARE_*_TYPE and G_DEFINE_QUARK give a type or
            # an error domain, which the GIR does not list.
            type_function = element.get(get_type)
            if type_function and type_function.endswith('_get_type'):
                stem = type_function[:-len('_get_type')].upper()
                prefix, _, rest = stem.partition('_')
                self.c.update({
                    '%s_TYPE_%s' % (prefix, rest),
                    stem,
                    '%s_IS_%s' % (prefix, rest),
                    stem + '_CLASS',
                    '%s_IS_%s_CLASS' % (prefix, rest),
                    stem + '_GET_CLASS',
                })
            if element.get('{%s}error-domain' % GIR_NS['glib']):
                c_name = element.get(c_type)
                if c_name:
                    self.c.add(re.sub(r'(?<!^)(?=[A-Z])', '_', c_name).upper())

    def _read_headers(self, source, build):
        # Macros of the public headers (the version checks, the export
        # macros) are C names too. Private headers do not count.
        headers = [h for h in glob.glob(os.path.join(source, 'libmpg', '*.h'))
                   if not h.endswith('-private.h')]
        headers += glob.glob(os.path.join(build, 'libmpg', '*.h'))
        for header in headers:
            with open(header, encoding='utf-8') as f:
                for match in re.finditer(r'^\s*#\s*define\s+(\w+)', f.read(), re.M):
                    self.c.add(match.group(1))

    @staticmethod
    def _read_python_override(path):
        names = set()
        if not os.path.exists(path):
            return names
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)

        def strings(node):
            if isinstance(node, (ast.List, ast.Tuple)):
                return [e.value for e in node.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            return []

        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == '__all__' for t in node.targets):
                names.update(strings(node.value))
            elif (isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name)
                  and node.target.id == '__all__'):
                names.update(strings(node.value))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and isinstance(node.func.value, ast.Name) and node.func.value.id == '__all__'):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        names.add(arg.value)
                    names.update(strings(arg))
        return names

    @staticmethod
    def _read_gjs_module(path):
        names = set()
        if not os.path.exists(path):
            return names
        with open(path, encoding='utf-8') as f:
            text = f.read()
        for match in re.finditer(
                r'^export\s+(?:async\s+)?(?:function\*?|class|const|let|var)\s+([A-Za-z_$][\w$]*)',
                text, re.M):
            names.add(match.group(1))
        for match in re.finditer(r'^export\s*\{([^}]*)\}', text, re.M):
            for item in match.group(1).split(','):
                words = item.split()
                if words:
                    names.add(words[-1])
        return names


def strip_c_comments_and_strings(text):
    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', ' ', text, flags=re.S)


def unknown_names(block, names):
    """The libmpg names a fragment uses that do not exist."""
    language = LANGUAGES[block.language]
    unknown = []

    def check_dotted(text, extra):
        for match in re.finditer(r'(?<![\w.])Mpg\.([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?', text):
            top, member = match.groups()
            if top not in names.top and top not in extra:
                unknown.append('Mpg.' + top)
            elif (member and top in names.members and member.isupper()
                  and member not in names.members[top]):
                unknown.append('Mpg.%s.%s' % (top, member))

    if language == 'c':
        for match in re.finditer(r'\b(?:mpg_\w+|MPG_\w+|Mpg[A-Z]\w*)\b',
                                 strip_c_comments_and_strings(block.text)):
            if match.group(0) not in names.c:
                unknown.append(match.group(0))
    elif language == 'python':
        check_dotted(block.text, names.python)
        for match in re.finditer(r'^\s*from\s+gi\.repository\.Mpg\s+import\s+\(?([^)\n]*)',
                                 block.text, re.M):
            for item in match.group(1).split(','):
                words = item.split()
                if words and words[0] not in names.top and words[0] not in names.python:
                    unknown.append(words[0])
    elif language == 'js':
        check_dotted(block.text, set())
        for match in re.finditer(r'(?<![\w$./\'"-])mpg\.([A-Za-z_$][\w$]*)', block.text):
            if match.group(1) != 'js' and match.group(1) not in names.gjs:
                unknown.append('mpg.' + match.group(1))
    elif language == 'vala':
        check_dotted(block.text, set())
    return sorted(set(unknown))


# ---------------------------------------------------------------------------
# Running things


class Checker:
    def __init__(self, build, source):
        self.build = os.path.abspath(build)
        self.source = os.path.abspath(source)
        self.names = Names(self.build, self.source)
        self.libdir = os.path.join(self.build, 'libmpg')
        self.vapi = os.path.join(self.libdir, 'libmpg-1.vapi')
        self.typelib = os.path.join(self.libdir, 'Mpg-1.0.typelib')
        self.gjs_module = os.path.join(self.source, 'bindings', 'gjs')
        self.gjs = shutil.which('gjs')
        self.valac = shutil.which('valac')
        self.cc = shlex.split(os.environ['CC']) if os.environ.get('CC') else None
        if self.cc is None and shutil.which('cc'):
            self.cc = [shutil.which('cc')]
        self.python = sys.executable
        self.mpirun = shutil.which('mpirun') or shutil.which('mpiexec')

    def environment(self, text):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('MPG_', 'OMPI_', 'PMIX_', 'PMI_'))}

        def prepend(name, value):
            env[name] = value + (os.pathsep + env[name] if env.get(name) else '')

        prepend('LD_LIBRARY_PATH', self.libdir)
        prepend('GI_TYPELIB_PATH', self.libdir)
        prepend('PYTHONPATH', os.path.join(self.source, 'bindings', 'python'))
        prepend('PKG_CONFIG_PATH', os.path.join(self.build, 'meson-uninstalled'))
        env['PYTHONDONTWRITEBYTECODE'] = '1'
        env['G_DEBUG'] = 'gc-friendly'
        env['MALLOC_CHECK_'] = '2'
        # Output goes to a pipe, as for any user whose output goes to a file.
        env.pop('PYTHONUNBUFFERED', None)
        env.pop('G_MESSAGES_DEBUG', None)
        mpi_dir = os.path.join(self.build, 'libmpg', 'mpi')
        if os.path.isdir(mpi_dir):
            env['MPG_MODULE_DIR'] = mpi_dir
            env['MPG_MPI_RELAY'] = os.path.join(mpi_dir, 'mpg-mpi-relay')
        if USES_MPI.search(text):
            env.update(MPI_ENV)
        return env

    @staticmethod
    def run(argv, cwd, env, timeout, what):
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        timed_out = False
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            Checker._kill_group(proc.pid)
            try:
                stdout, stderr = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                # Something that left the process group holds the pipes:
                # give up on the output rather than wait for it.
                proc.kill()
                proc.wait()
                stdout, stderr = b'', b''
        # Nothing a snippet starts may outlive its check: what is still in
        # its process group (a daemon child, a server) goes.
        Checker._kill_group(proc.pid)
        stdout = stdout.decode('utf-8', 'replace')
        stderr = stderr.decode('utf-8', 'replace')
        details = ('$ %s\n--- stdout:\n%s--- stderr:\n%s'
                   % (' '.join(shlex.quote(a) for a in argv), stdout, stderr))
        if timed_out:
            if proc.returncode is not None and proc.returncode >= 0:
                raise Failure('%s: exited, but something it started kept its output open '
                              'for %d s' % (what, timeout), details)
            raise Failure('%s: timed out after %d s' % (what, timeout), details)
        if proc.returncode != 0:
            raise Failure('%s: exit status %d' % (what, proc.returncode), details)
        return stdout, stderr, details

    @staticmethod
    def _kill_group(pgid):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    # -- programs ------------------------------------------------------------

    def check_program(self, block, tmp):
        language = LANGUAGES[block.language]
        name = block.argument
        env = self.environment(block.text)
        if language == 'c':
            argv = self.build_c(block, tmp, name, env)
        elif language == 'vala':
            argv = self.build_vala(block, tmp, name, env)
        elif language == 'python':
            if not os.path.exists(self.typelib):
                raise Skip('no typelib in the build (introspection disabled)')
            # The script's directory comes first in sys.path: NAME.py would
            # be imported in place of a module of that name.
            try:
                shadows = name in sys.stdlib_module_names or importlib.util.find_spec(name)
            except (ImportError, ValueError):
                shadows = False
            if shadows:
                raise Failure('program name %r is the name of a Python module' % name)
            path = os.path.join(tmp, name + '.py')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(block.text)
            argv = [self.python, path]
        else:
            if self.gjs is None:
                raise Skip('gjs not found')
            if not os.path.exists(self.typelib):
                raise Skip('no typelib in the build (introspection disabled)')
            path = os.path.join(tmp, name + '.js')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(INSTALLED_GJS_MODULE.sub(
                    lambda m: m.group(1) + 'file://' + os.path.join(self.gjs_module, m.group(2))
                    + m.group(1), block.text))
            argv = [self.gjs, '-m', path]

        stdout, stderr, details = self.run(argv, tmp, env, RUN_TIMEOUT, 'the program')
        if stderr:
            raise Failure('the program wrote to its standard error', details)
        if block.output is not None and stdout != block.output:
            raise Failure('the output differs from the page\'s output block',
                          details + '--- expected:\n' + block.output)

    def build_c(self, block, tmp, name, env):
        if self.cc is None:
            raise Skip('no C compiler')
        source = os.path.join(tmp, name + '.c')
        program = os.path.join(tmp, name)
        with open(source, 'w', encoding='utf-8') as f:
            f.write(block.text)
        flags = self.pkg_config(env)
        # -rdynamic: the spawn start method finds tasks by their symbol.
        argv = self.cc + ['-Wall', '-Werror', '-o', program, source, '-rdynamic'] + flags
        _, stderr, details = self.run(argv, tmp, env, BUILD_TIMEOUT, 'compiling')
        if stderr:
            raise Failure('the compiler warned', details)
        return [program]

    def pkg_config(self, env):
        try:
            out = subprocess.run(['pkg-config', '--cflags', '--libs', 'libmpg-1'],
                                 env=env, check=True, capture_output=True, text=True,
                                 timeout=BUILD_TIMEOUT).stdout
            return shlex.split(out)
        except (OSError, subprocess.SubprocessError):
            # No meson-uninstalled/ (an old meson): the directories directly.
            glib = subprocess.run(['pkg-config', '--cflags', '--libs', 'gio-unix-2.0'],
                                  check=True, capture_output=True, text=True,
                                  timeout=BUILD_TIMEOUT).stdout
            return (['-I' + os.path.join(self.source, 'libmpg'), '-I' + self.libdir,
                     '-L' + self.libdir, '-lmpg-1'] + shlex.split(glib))

    def build_vala(self, block, tmp, name, env):
        if self.valac is None:
            raise Skip('valac not found')
        if not os.path.exists(self.vapi):
            raise Skip('no VAPI in the build (-Dvapi=false or no vapigen)')
        source = os.path.join(tmp, name + '.vala')
        program = os.path.join(tmp, name)
        with open(source, 'w', encoding='utf-8') as f:
            f.write(block.text)
        # What an installed libmpg-1.deps next to the VAPI tells valac.
        packages = []
        for deps in (os.path.join(self.libdir, 'libmpg-1.deps'),
                     os.path.join(self.build, 'meson-private', 'libmpg-1.deps')):
            if os.path.exists(deps):
                with open(deps, encoding='utf-8') as f:
                    packages = f.read().split()
                break
        if 'Posix.' in block.text:
            packages.append('posix')
        argv = [self.valac, '--vapidir', self.libdir, '--pkg', 'libmpg-1']
        for package in packages:
            argv += ['--pkg', package]
        argv += ['-d', tmp, '-o', program, source]
        _, stderr, details = self.run(argv, tmp, env, BUILD_TIMEOUT, 'compiling')
        if re.search(r'\b(warning|error):', stderr):
            raise Failure('valac warned', details)
        return [program]

    # -- fragments -----------------------------------------------------------

    def check_fragment(self, block):
        if not self.names.have_gir:
            raise Skip('no GIR in the build (introspection disabled)')
        unknown = unknown_names(block, self.names)
        if unknown:
            raise Failure('names that libmpg does not have: ' + ', '.join(unknown))

    # -- shell ---------------------------------------------------------------

    def check_shell(self, block, tmp):
        lines = block.text.splitlines()
        session = any(line.startswith('$ ') for line in lines)
        if session:
            commands, expected = [], []
            continued = False
            for line in lines:
                if continued:
                    commands.append(line)
                elif line.startswith('$ '):
                    commands.append(line[2:])
                else:
                    expected.append(line)
                    continue
                continued = line.endswith('\\')
            script = ''.join(c + '\n' for c in commands)
            output = ''.join(e + '\n' for e in expected)
        else:
            script, output = block.text, None
        if self.mpirun is None and re.search(r'\bmpi(run|exec)\b', script):
            raise Skip('mpirun not found')
        path = os.path.join(tmp, 'snippet.sh')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(script)
        env = self.environment(script)
        env['TMPDIR'] = tmp
        try:
            stdout, _, details = self.run(['sh', '-e', path], self.build, env, RUN_TIMEOUT,
                                          'the commands')
        except Failure as e:
            e.details = '--- script:\n' + script + e.details
            raise
        if output is not None and stdout != output:
            raise Failure('the output differs from the session on the page',
                          '--- script:\n' + script + details + '--- expected:\n' + output)

    # -- one block -----------------------------------------------------------

    def check(self, block):
        """None when the block passed; raises Skip or Failure."""
        if block.kind is None:
            raise Failure('a %s block without a snippet marker' % block.language)
        if block.problem:
            raise Failure(block.problem)
        if block.kind not in KINDS:
            raise Failure('unknown snippet kind %r' % block.kind)
        language = LANGUAGES.get(block.language)
        if language is None:
            raise Failure('a snippet marker on a block of language %r, which is not checked'
                          % (block.language or '(none)'))
        if language not in KINDS[block.kind]:
            raise Failure('a %s marker on a %s block' % (block.kind, block.language))
        if block.kind == 'program':
            if not block.argument or not PROGRAM_NAME.match(block.argument):
                raise Failure('a program marker needs a NAME (letters, digits, -, _ and .)')
        elif block.kind == 'elsewhere':
            if not block.argument:
                raise Failure('an elsewhere marker needs a REASON')
            raise Skip(block.argument)
        elif block.argument:
            raise Failure('a %s marker takes no argument' % block.kind)

        if block.kind == 'fragment':
            self.check_fragment(block)
            return
        tmp = tempfile.mkdtemp(prefix='mpg-snippet-')
        try:
            if block.kind == 'program':
                self.check_program(block, tmp)
            else:
                self.check_shell(block, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def describe(block):
    words = [block.where, block.kind or block.language]
    if block.kind == 'program' and block.argument:
        words.append(block.argument)
    return ' '.join(words)


def diagnostics(text, limit=80):
    lines = text.splitlines()
    if len(lines) > limit:
        lines = lines[:limit // 2] + ['[… %d lines …]' % (len(lines) - limit)] + lines[-limit // 2:]
    for line in lines:
        print('#   ' + line)


def main():
    parser = argparse.ArgumentParser(description='Check the code blocks of docs/*.md and README.md')
    parser.add_argument('--build', required=True, help='the build directory')
    parser.add_argument('--source', required=True, help='the source directory')
    parser.add_argument('pages', nargs='*', metavar='PAGE.md')
    args = parser.parse_args()

    pages = args.pages or (sorted(glob.glob(os.path.join(args.source, 'docs', '*.md'))) +
                           [os.path.join(args.source, 'README.md')])
    checker = Checker(args.build, args.source)

    tests = []          # (description, block or None, problem or None)
    for page in pages:
        blocks, problems = parse_page(page)
        page_tests = [(line, '%s:%d marker' % (os.path.basename(page), line), None, problem)
                      for line, problem in problems]
        for block in blocks:
            if block.kind is None and block.language not in LANGUAGES:
                continue    # text, output, diagrams: not code to check
            page_tests.append((block.line, describe(block), block, None))
        tests += [test[1:] for test in sorted(page_tests, key=lambda test: test[0])]

    print('TAP version 13')
    print('1..%d' % len(tests))
    failed = 0
    elsewhere = []
    for number, (description, block, problem) in enumerate(tests, 1):
        try:
            if problem is not None:
                raise Failure(problem)
            checker.check(block)
        except Skip as e:
            print('ok %d - %s # SKIP %s' % (number, description, e))
            if block is not None and block.kind == 'elsewhere':
                elsewhere.append('%s: %s' % (block.where, e))
        except Failure as e:
            failed += 1
            print('not ok %d - %s: %s' % (number, description, e))
            if e.details:
                diagnostics(e.details)
        else:
            print('ok %d - %s' % (number, description))
        sys.stdout.flush()
    for line in elsewhere:
        print('# elsewhere: ' + line)
    if failed:
        print('# %d of %d blocks failed' % (failed, len(tests)))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
