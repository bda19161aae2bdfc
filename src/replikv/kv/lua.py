"""The Lua 5.1 interpreter behind EVAL (``kv/types/scripting.py``): sandbox,
script cache and Redis's Lua <-> RESP conversions, as Redis 7.0 does them.

One :class:`ScriptEngine` per node (``StateMachine.scripts``): a ``lupa``
Lua 5.1 runtime (Redis embeds Lua 5.1) and the script cache, ``sha1 hex
-> Script(body, compiled function, shebang flags)``. The cache is per node and not replicated
(as in Redis): EVAL and SCRIPT LOAD fill it, SCRIPT FLUSH empties it, and
a restarted node or one restored from a snapshot starts empty. A follower
never needs it: the leader logs a script's effects (leader-follower) or
the script's body (raft, EVALSHA rewritten to EVAL).

The sandbox (what a script sees), as Redis 7.0:

- globals: the base functions Redis keeps (``assert error ipairs next pairs pcall xpcall rawequal
  rawget rawset select setmetatable getmetatable tonumber tostring type unpack load loadstring
  collectgarbage gcinfo _G _VERSION``), the ``string table math coroutine`` libraries and ``redis``;
  no ``os io debug package require dofile loadfile print getfenv setfenv newproxy`` and no
  ``python`` (lupa's bridge). Reading a missing global raises "Script attempted to access
  nonexistent global variable 'x'", writing any global or library field "Attempt to modify a
  readonly table": the global table and the libraries are read-only proxies, so no script can leave
  state behind for the next one (which would make replicas that restarted diverge from the others).
  ``bit`` and ``cjson`` are provided (``kv/lua_libs.py``); ``cmsgpack`` and ``struct`` are not;
  ``pairs`` over a library proxy sees nothing (Lua 5.1 has no ``__pairs``). Bytecode is never
  loaded: ``loadstring``/``load`` of a binary chunk fail as Redis's do.
- What would differ between replicas is made the same: ``tostring`` of a
  table, function or userdata shows a number counted per script
  (``table: 0x00000001``) instead of an address; ``collectgarbage`` and
  ``gcinfo`` answer 0; ``getmetatable`` of a Python object (the callables
  below) is nil. Still not deterministic (documented, not refused):
  ``pairs`` order over keys that are tables or functions (hashed by
  address), and what a weak table still holds after a garbage collection
  (its timing depends on each node's heap).
- ``math.random``/``math.randomseed`` use Redis's rand48 generator, reseeded
  with 0 before every script (Redis 5's rule for deterministic scripts;
  Redis 7 no longer reseeds), so a script draws the same numbers on every
  replica.
- ``redis.call``/``redis.pcall`` (arguments: strings, or numbers formatted
  with ``%.17g``), ``redis.error_reply``, ``redis.status_reply``,
  ``redis.sha1hex``, ``redis.log`` (checked, then dropped),
  ``redis.setresp`` (2 only: replikv's scripts speak RESP2),
  ``redis.replicate_commands`` (true), ``redis.set_repl`` (REPL_ALL only:
  a replica may not skip a write), ``redis.breakpoint``/``redis.debug``
  (no debugger), the ``LOG_*``/``REPL_*`` constants and
  ``REDIS_VERSION``.
- ``redis.call``, ``redis.pcall``, ``redis.sha1hex``, ``redis.log``,
  ``redis.setresp``, ``redis.set_repl``, ``bit.*`` and ``cjson.*`` are Python callables,
  so ``type()`` says ``userdata`` where Redis says ``function``: a Lua
  function would be tail-called by ``return redis.call(...)`` and the
  error's line lost.
- ``pcall`` turns an error table ``{err=...}`` into its message, as Redis
  7.0's patched Lua does, so ``pcall(redis.call, ...)`` yields a string.

Errors that end a script are replied as Redis 7.0 words them: ``<message>
script: <sha>, on @user_script:<line>.``, the message prefixed with
``ERR`` unless it came as an error table (``redis.call``'s errors, an
``error({err=...})``).

A script is stopped after ``INSTRUCTION_LIMIT`` million Lua instructions
(checked every million by a debug hook), with an error no ``pcall`` inside
it can swallow; the writes it made are kept, as for any failing script.
The limit counts instructions, not time, so every replica that runs the
script (raft runs it at apply on each) stops it at the same point; a
script that never ended would block the node, and in raft every replica,
forever. Redis instead answers BUSY after lua-time-limit (5 s) and offers
SCRIPT KILL. Time spent inside ``redis.call`` is not counted, nor is code
running in a coroutine the script created (its own hook state).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import hiredis
import lupa.lua51 as lua51

from replikv.core.replies import NULL_ARRAY, Raw, RespError
from replikv.core.resp import encode_reply
from replikv.kv import lua_libs

__all__ = ["Script", "ScriptEngine", "script_command", "sha1hex", "with_bodies", "with_body"]

Reply = Any
# (argv) -> (is_error, Lua value): how redis.call reaches the data
CallFn = Callable[[list[bytes]], tuple[bool, Any]]

_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_RAND48_MASK = (1 << 48) - 1
_RAND48_MAX = (1 << 31) - 1  # Redis's REDIS_LRAND48_MAX
_VERSION = "7.0.0"  # what INFO's redis_version says
INSTRUCTION_LIMIT = 500  # millions: 1 to 7 s of Lua here (Redis: lua-time-limit 5 s)
_VERSION_NUM = 0x070000


def sha1hex(body: bytes) -> bytes:
    """The script's SHA1 digest as lowercase hex, its name in the cache."""
    return hashlib.sha1(body).hexdigest().encode()


class _Rand48:
    """Redis's rand48 (the POSIX drand48 recurrence: x = a*x + c mod 2**48)."""

    __slots__ = ("x",)

    def __init__(self) -> None:
        self.x = 0x330E

    def seed(self, value: int) -> None:
        self.x = ((value & 0xFFFFFFFF) << 16) | 0x330E

    def next(self) -> float:
        """A float in [0, 1) as Redis's math.random draws it."""
        self.x = (0x5DEECE66D * self.x + 0xB) & _RAND48_MASK
        return ((self.x >> 17) % _RAND48_MAX) / _RAND48_MAX


# The sandbox, built once per runtime. Its arguments are the Python
# callbacks; they stay in locals, out of any script's reach.
_SETUP = r"""
local py_call, py_pcall, py_sha1, py_log, py_setresp, py_set_repl, py_error_text,
  py_random, py_seed, version, version_num, py_libs = ...
local real = _G
local error, type, tostring, select, rawget, rawset = error, type, tostring, select, rawget, rawset
local setmetatable, getmetatable, pcall, xpcall = setmetatable, getmetatable, pcall, xpcall
local format = string.format
local pairs, ipairs, tonumber, floor = pairs, ipairs, tonumber, math.floor
local getinfo, sethook, loadstring = debug.getinfo, debug.sethook, loadstring

local READONLY = 'Attempt to modify a readonly table'
local HOOK_EVERY = 1000000  -- instructions between two checks of the limit
local protected = setmetatable({}, {__mode = 'k'})

local function refuse() error(READONLY, 2) end

local function readonly(t)
  local p = setmetatable({}, {__index = t, __newindex = refuse, __metatable = false})
  protected[p] = true
  return p
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- A script over the instruction limit is stopped by this error, which no pcall or
-- xpcall inside the script can swallow.
local KILLED = {err = 'ERR Script killed: it ran more Lua instructions than replikv allows '
  .. '(a deterministic limit, the same on every replica; the writes it made are kept)'}

-- pcall as Redis 7.0's: an error table {err=...} (or redis.call's error) comes back
-- as its message
local function caught(ok, ...)
  if ok then return true, ... end
  local e = ...
  if e == KILLED then error(KILLED, 0) end
  local text = py_error_text(e)
  if text then return false, text end
  if type(e) == 'table' and type(rawget(e, 'err')) == 'string' then return false, e.err end
  return false, e
end

-- redis.call and the others that may raise are Python callables, so that a
-- `return redis.call(...)` keeps the script's frame (a Lua function would be
-- tail-called and the error's line lost)
local redis = {call = py_call, pcall = py_pcall, sha1hex = py_sha1, log = py_log,
  setresp = py_setresp, set_repl = py_set_repl}
local WRONG_ARGS = 'ERR wrong number or type of arguments'
function redis.error_reply(msg)
  if type(msg) ~= 'string' then return {err = WRONG_ARGS} end
  if msg:sub(1, 1) == '-' then msg = msg:sub(2) end
  if not msg:find(' ', 1, true) then msg = 'ERR ' .. msg end
  return {err = msg}
end
function redis.status_reply(msg)
  if type(msg) ~= 'string' then return {err = WRONG_ARGS} end
  return {ok = msg}
end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE = 0, 1, 2
redis.REPL_REPLICA, redis.REPL_ALL = 2, 3
function redis.replicate_commands() return true end
function redis.breakpoint() return false end
function redis.debug() end
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = version, version_num

local math_lib = copy(math)
function math_lib.random(...)
  local r = py_random()
  local n = select('#', ...)
  if n == 0 then return r end
  local m, u = ...
  if n == 1 then
    m = tonumber(m)
    if not m or m < 1 then error("bad argument #1 to 'random' (interval is empty)", 2) end
    return floor(r * m) + 1
  end
  if n == 2 then
    m, u = tonumber(m), tonumber(u)
    if not m or not u or m > u then error("bad argument #2 to 'random' (interval is empty)", 2) end
    return floor(r * (u - m + 1)) + m
  end
  error('wrong number of arguments', 2)
end
function math_lib.randomseed(s) py_seed(s) end

local globals = {}
for _, name in ipairs({'assert', 'error', 'ipairs', 'next', 'pairs', 'rawequal', 'rawget',
    'select', 'tonumber', 'tostring', 'type', 'unpack',
    'collectgarbage', 'gcinfo', '_VERSION'}) do
  globals[name] = real[name]
end
globals.pcall = function(...) return caught(pcall(...)) end
globals.xpcall = function(f, h)
  local function unless_killed(e)
    if e == KILLED then return e end
    return h(e)
  end
  local function rethrow(ok, ...)
    if not ok and ... == KILLED then error(KILLED, 0) end
    return ok, ...
  end
  return rethrow(xpcall(f, unless_killed))
end

-- Lua bytecode is never loaded (it can crash the interpreter): as Redis's Lua,
-- a binary chunk fails like text that does not parse
local real_loadstring, concat = loadstring, table.concat
local function binary_refused(name)
  local id
  local c = name:sub(1, 1)
  if c == '=' or c == '@' then
    id = name:sub(2)
  else
    local src = name:match('^[^%z]*')
    local len = #src:match('^[^\n\r]*')
    if len > 44 then len = 44 end
    if len < #src then
      id = '[string "' .. src:sub(1, len) .. '..."]'
    else
      id = '[string "' .. src .. '"]'
    end
  end
  return nil, id .. ":1: unexpected symbol near 'char(27)'"
end
globals.loadstring = function(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then return binary_refused(name or s) end
  return real_loadstring(s, name)
end
globals.load = function(reader, name)
  if type(reader) ~= 'function' then
    error("bad argument #1 to 'load' (function expected, got " .. type(reader) .. ")", 2)
  end
  local parts = {}
  while true do
    local piece = reader()
    if piece == nil or piece == '' then break end
    if type(piece) ~= 'string' then return nil, 'reader function must return a string' end
    parts[#parts + 1] = piece
  end
  local chunk = concat(parts)
  name = name or '=(load)'
  if chunk:byte(1) == 27 then return binary_refused(name) end
  return real_loadstring(chunk, name)
end
globals.rawset = function(t, k, v)
  if protected[t] then error(READONLY, 0) end
  return rawset(t, k, v)
end
globals.setmetatable = function(t, mt)
  if protected[t] then error(READONLY, 0) end
  return setmetatable(t, mt)
end
-- What would differ between replicas is made deterministic: an object's address
-- (tostring of a table, function, userdata: a number counted per script instead),
-- memory use (collectgarbage, gcinfo: 0), and no script reaches the metatable lupa
-- gives Python objects (changing it would outlive the script).
local ids = setmetatable({}, {__mode = 'k'})
local last_id = 0
local raw_tostring, collect = tostring, collectgarbage
local ADDRESSED = {table = true, ['function'] = true, userdata = true, thread = true}
globals.tostring = function(...)
  if select('#', ...) == 0 then error("bad argument #1 to 'tostring' (value expected)", 2) end
  local v = ...
  local kind = type(v)
  if not ADDRESSED[kind] then return raw_tostring(v) end
  local mt = kind ~= 'userdata' and getmetatable(v)
  if type(mt) == 'table' and rawget(mt, '__tostring') then return raw_tostring(v) end
  local id = ids[v]
  if not id then
    last_id = last_id + 1
    id = last_id
    ids[v] = id
  end
  return format('%s: 0x%08x', kind, id)
end
globals.collectgarbage = function(...)
  collect(...)
  return 0
end
globals.gcinfo = function() return 0 end
globals.getmetatable = function(v)
  if type(v) == 'userdata' then return nil end
  return getmetatable(v)
end
globals.string = readonly(string)
globals.table = readonly(table)
globals.coroutine = readonly(coroutine)
globals.math = readonly(math_lib)
globals.redis = readonly(redis)
for name, lib in pairs(py_libs) do  -- bit, cjson: Python callables, kv/lua_libs.py
  local t = {}
  for k, v in pairs(lib) do t[k] = v end
  globals[name] = readonly(t)
end
getmetatable('').__index = globals.string
getmetatable('').__metatable = false

-- The global table itself becomes the read-only proxy (loadstring'd chunks share it).
-- lupa looks up debug.traceback through the C API (from no Lua frame, or from its own
-- C function when Python calls back into Lua): it alone gets it.
local lupa_debug = {traceback = debug.traceback}
for k in pairs(copy(real)) do rawset(real, k, nil) end
globals._G = real
protected[real] = true
setmetatable(real, {
  __index = function(_, k)
    local v = globals[k]
    if v == nil and k == 'debug' then
      local caller = getinfo(2, 'S')
      if not caller or caller.what == 'C' then return lupa_debug end
    end
    if v == nil then
      error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
    end
    return v
  end,
  __newindex = refuse,
  __metatable = false,
})

-- Where an error happened: the innermost frame that is neither C nor this sandbox.
local here = getinfo(1, 'S').source
local function where()
  for level = 3, 50 do
    local info = getinfo(level, 'Sl')
    if not info then break end
    if info.what ~= 'C' and info.source ~= here then return info.source, info.currentline end
  end
  return '@user_script', 0
end

-- What a script's error replies: an error table's message as it is, any other error
-- prefixed with ERR (redis.call's errors count as tables)
local function handler(e)
  local source, line = where()
  local text, as_table = py_error_text(e)
  if text then
    if not as_table then text = 'ERR ' .. text end
    return {text, source, line}
  end
  if type(e) == 'table' then
    return {tostring(rawget(e, 'err')), source, line}
  end
  return {'ERR ' .. tostring(e), source, line}
end

local function compile(body)
  local fn, err = loadstring(body, '@user_script')
  return fn, err
end

local function run(fn, keys, argv, limit)
  globals.KEYS, globals.ARGV = keys, argv
  ids = setmetatable({}, {__mode = 'k'})
  last_id = 0
  py_seed(0)
  local ticks = 0
  sethook(function()
    ticks = ticks + 1
    if ticks >= limit then error(KILLED, 0) end
  end, '', HOOK_EVERY)
  local ok, value = xpcall(fn, handler)
  sethook()
  if not ok and type(value) ~= 'table' then  -- an error in the handler itself
    value = {'ERR ' .. tostring(value), '@user_script', 0}
  end
  return ok, value
end

-- "user_script:3: " for an error a library function raises, as luaL_error words it
local function position()
  for level = 2, 50 do
    local info = getinfo(level, 'Sl')
    if not info then break end
    if info.what ~= 'C' and info.source ~= here then
      if info.currentline > 0 then return info.short_src .. ':' .. info.currentline .. ': ' end
      return ''
    end
  end
  return ''
end

return compile, run, position
"""


class _Raise(Exception):
    """An error a Python callable raises into Lua: ``message``, replied as it
    is when ``as_table`` (redis.call's errors), else prefixed with ERR."""

    def __init__(self, message: bytes, as_table: bool) -> None:
        super().__init__(message)
        self.message = message
        self.as_table = as_table


def _error_text(e: Any) -> tuple[bytes, bool] | None:
    return (e.message, e.as_table) if isinstance(e, _Raise) else None


def _deny_attributes(obj: Any, name: Any, is_setting: bool) -> Any:
    """lupa's attribute filter: a script may not reach into a Python object."""
    raise AttributeError("not accessible from scripts")


_NO_ARGS = b"ERR Please specify at least one argument for this redis lib call"
_BAD_ARG = b"ERR Lua redis lib command arguments must be strings or integers"


def _sha1hex(*args: Any) -> bytes:
    if len(args) != 1:
        raise _Raise(b"wrong number of arguments", False)
    (s,) = args
    if type(s) is int or type(s) is float:
        s = b"%.14g" % s  # Lua's tostring
    return sha1hex(s if type(s) is bytes else b"")


def _log(*args: Any) -> None:
    """redis.log: the arguments are checked as Redis does, the line is dropped."""
    if len(args) < 2:
        raise _Raise(b"redis.log() requires two arguments or more.", False)
    level = args[0]
    if type(level) not in (int, float) or not 0 <= level <= 3:
        raise _Raise(b"Invalid debug level.", False)


def _setresp(*args: Any) -> None:
    if len(args) != 1:
        raise _Raise(b"redis.setresp() requires one argument.", False)
    if args[0] == 3:
        raise _Raise(b"replikv scripts speak RESP2 only", False)
    if args[0] != 2:
        raise _Raise(b"RESP version must be 2 or 3.", False)


def _set_repl(*args: Any) -> None:
    if len(args) != 1:
        raise _Raise(b"redis.set_repl() requires one argument.", False)
    if args[0] != 3:
        raise _Raise(b"replikv replicates every write of a script (REPL_ALL only)", False)


class Script(NamedTuple):
    """A cached script: its body, compiled function and shebang flags (None:
    no shebang, the Redis 6 style script)."""

    body: bytes
    fn: Any
    flags: frozenset[bytes] | None

    @property
    def may_write(self) -> bool:
        return self.flags is None or b"no-writes" not in self.flags


_SHEBANG_FLAGS = frozenset(
    {b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster", b"allow-cross-slot-keys"}
)


def _shebang_flags(body: bytes) -> frozenset[bytes] | None:
    """The flags of a ``#!lua flags=a,b`` first line (Redis 7), None without one."""
    if not body.startswith(b"#!"):
        return None
    words = body.split(b"\n", 1)[0].split(b" ")
    if words[0] != b"#!lua":
        raise RespError(f"ERR Unexpected engine in script shebang: {_text(words[0])}")
    flags: set[bytes] = set()
    for word in words[1:]:
        if not word:
            continue
        if not word.startswith(b"flags="):
            raise RespError(f"ERR Unknown lua shebang option: {_text(word)}")
        for flag in word[6:].split(b","):
            if flag and flag not in _SHEBANG_FLAGS:
                raise RespError(f"ERR Unexpected flag in script shebang: {_text(flag)}")
            flags.add(flag)
    return frozenset(flags)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class ScriptEngine:
    """One node's Lua runtime and script cache (see the module docstring)."""

    def __init__(self) -> None:
        self.cache: dict[bytes, Script] = {}
        # millions of Lua instructions a script may run (see the module docstring)
        self.instruction_limit = INSTRUCTION_LIMIT
        self._rand = _Rand48()
        self._call: CallFn | None = None
        self.lua = lua51.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False,
            unpack_returned_tuples=True, attribute_filter=_deny_attributes,
        )
        null = self.lua.eval("newproxy()")  # cjson.null: a userdata of its own
        found = lua_libs.libraries(self, null, self.lua.eval("rawequal"))
        libs = self.lua.table_from({
            name.encode(): self.lua.table_from({k.encode(): fn for k, fn in lib.items()})
            for name, lib in found.items()
        })
        self._compile, self._run, self._position = self.lua.execute(
            _SETUP, self._redis_call, self._redis_pcall, _sha1hex, _log, _setresp, _set_repl,
            _error_text, self._rand.next, self._py_seed, _VERSION.encode(), _VERSION_NUM, libs,
        )

    # -------------------------------------------------------------- the cache

    def load(self, body: bytes) -> bytes:
        """Compile ``body`` into the cache (SCRIPT LOAD, EVAL); its sha.

        Raises Redis's error for a bad shebang or a body that does not compile.
        """
        sha = sha1hex(body)
        if sha not in self.cache:
            flags = _shebang_flags(body)
            source = body if flags is None else b"--" + body  # keeps the line numbers
            fn, err = self._compile(source)
            if fn is None:
                message = err.decode("utf-8", "replace")
                raise RespError(f"ERR Error compiling script (new function): {message}")
            self.cache[sha] = Script(body, fn, flags)
        return sha

    def get(self, sha: bytes) -> Script | None:
        """The cached script ``sha`` (any case), or None."""
        return self.cache.get(sha.lower())

    def body(self, sha: bytes) -> bytes | None:
        """The cached body of ``sha`` (any case), or None."""
        script = self.cache.get(sha.lower())
        return None if script is None else script.body

    def flush(self) -> None:
        self.cache.clear()

    # ----------------------------------------------------------------- running

    def run(self, sha: bytes, keys: list[bytes], args: list[bytes], call: CallFn) -> Reply:
        """Run cached script ``sha`` with ``KEYS``/``ARGV``; its reply (Python value).

        ``call(argv)`` serves each ``redis.call``/``redis.pcall``.
        """
        fn = self.cache[sha].fn
        lua = self.lua
        outer = self._call
        self._call = call
        try:
            result = self._run(
                fn, lua.table_from(keys), lua.table_from(args), self.instruction_limit
            )
        finally:
            self._call = outer
        ok, value = result
        if not ok:
            message, source, line = value[1], value[2], value[3]
            text = b"%s script: %s, on %s:%d." % (message, sha, source, line)
            return _error(text)
        try:
            return _reply(value)
        except RecursionError:
            return RespError("ERR reached lua stack limit")

    def _redis_call(self, *args: Any) -> Any:
        is_error, value = self._dispatch(args)
        if is_error:
            raise _Raise(value, True)
        return value

    def _redis_pcall(self, *args: Any) -> Any:
        is_error, value = self._dispatch(args)
        return self.lua.table_from({b"err": value}) if is_error else value

    def _dispatch(self, args: tuple[Any, ...]) -> tuple[bool, Any]:
        """redis.call's arguments checked (strings, or numbers as ``%.17g``) and run."""
        if not args:
            return True, _NO_ARGS
        argv = []
        for arg in args:
            t = type(arg)
            if t is bytes:
                argv.append(arg)
            elif t is int or t is float:
                argv.append(b"%.17g" % arg)
            else:
                return True, _BAD_ARG
        if self._call is None:
            return True, b"ERR redis.call outside a script run"
        return self._call(argv)

    def lib_error(self, message: bytes) -> Exception:
        """The error a library function (bit, cjson) raises: positioned at the
        script's line, as a C library's luaL_error is."""
        return _Raise(self._position() + message, False)

    def _py_seed(self, value: Any) -> None:
        self._rand.seed(int(value) if isinstance(value, (int, float)) else 0)

    # ---------------------------------------------------- Python -> Lua replies

    def to_lua(self, reply: Reply) -> tuple[bool, Any]:
        """A command's reply as redis.call hands it to Lua: ``(is_error, value)``.

        RESP2 rules: integer -> number, bulk -> string, null -> false,
        array -> table, status -> ``{ok=...}``, error -> its message (the
        caller raises it or wraps it in ``{err=...}``). A set's members come
        sorted (Redis 5's rule for scripts: the order of a Python set differs
        between processes, a script must see the same one on every replica).
        """
        if isinstance(reply, RespError):
            return True, reply.message.encode()
        if type(reply) is Raw and reply.startswith(b"-"):  # an error already encoded
            return True, bytes(reply[1:]).rstrip(b"\r\n")
        return False, self._lua_value(reply)

    def _lua_value(self, value: Any) -> Any:
        t = type(value)
        if t is bytes or t is int:
            return value
        if value is None or value is NULL_ARRAY:
            return False
        if t is str:
            return self.lua.table_from({b"ok": value.encode()})
        if t is bool:
            return 1 if value else 0
        if t is list or t is tuple:
            return self.lua.table_from([self._lua_value(v) for v in value])
        if t is set or t is frozenset:
            return self.lua.table_from(sorted(value))
        if t is dict:
            flat: list[Any] = []
            for k, v in value.items():
                flat += (self._lua_value(k), self._lua_value(v))
            return self.lua.table_from(flat)
        if isinstance(value, RespError):
            return self.lua.table_from({b"err": value.message.encode()})
        if isinstance(value, hiredis.ReplyError):  # inside a Raw reply read back
            return self.lua.table_from({b"err": str(value).encode()})
        # float, Raw, anything else: its RESP2 form, read back
        reader = hiredis.Reader()
        reader.feed(encode_reply(value))
        return self._lua_value(reader.gets())


# ------------------------------------------------------- Lua -> Python replies


def _reply(value: Any) -> Reply:
    """A script's return value as Redis converts it (RESP2).

    number -> integer (truncated; out of range or NaN -> INT64_MIN as C's
    cast does on x86), string -> bulk, true -> 1, false/nil -> null,
    table -> ``{err=s}`` error, ``{ok=s}`` status, ``{double=n}`` bulk
    ``%.17g``, else the array of its items up to the first nil.
    """
    if value is None or value is False:
        return None
    if value is True:
        return 1
    t = type(value)
    if t is bytes:
        return value
    if t is int:
        return value if _I64_MIN <= value <= _I64_MAX else _I64_MIN
    if t is float:
        if math.isnan(value) or not _I64_MIN <= value < 2.0**63:
            return _I64_MIN
        return int(value)
    if lua51.lua_type(value) != "table":
        return None  # a function, userdata, thread: Redis replies nil
    err = value[b"err"]
    if type(err) is bytes:
        return _error(err)
    ok = value[b"ok"]
    if type(ok) is bytes:
        return _status(ok)
    double = value[b"double"]
    if type(double) in (int, float):
        return _double(float(double))
    items = []
    i = 1
    while (item := value[i]) is not None:
        items.append(_reply(item))
        i += 1
    return items


def _clean(text: bytes) -> bytes:
    return text.replace(b"\r", b" ").replace(b"\n", b" ")


def _error(text: bytes) -> Reply:
    """An error reply with ``text`` (Raw when it is not UTF-8, which RespError needs).

    Deviation: the encoder writes an empty error as ``-ERR`` and drops one
    leading ``-`` (Redis writes ``{err='-x'}`` as ``--x``).
    """
    text = _clean(text)
    try:
        return RespError(text.decode())
    except UnicodeDecodeError:
        return Raw(b"-%s\r\n" % text)


def _status(text: bytes) -> Reply:
    text = _clean(text)
    try:
        return text.decode()
    except UnicodeDecodeError:
        return Raw(b"+%s\r\n" % text)


def _double(value: float) -> bytes:
    if math.isnan(value):
        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return b"%.17g" % value


# ----------------------------------------------------------------------- SCRIPT

_WITH_BODY = {b"EVALSHA": b"EVAL", b"EVALSHA_RO": b"EVAL_RO"}


def with_body(sm: Any, argv: list[bytes]) -> list[bytes]:
    """``EVALSHA[_RO] sha ...`` as ``EVAL[_RO] body ...`` when ``sm``'s node has
    the script, else ``argv`` itself: what a node forwards to its leader,
    whose cache (per node) may not hold it."""
    name = _WITH_BODY.get(argv[0].upper()) if len(argv) > 1 else None
    if name is None:
        return argv
    body = sm.scripts.body(argv[1])
    return argv if body is None else [name, body, *argv[2:]]


_WITH_BODY_LENGTHS = frozenset(len(name) for name in _WITH_BODY)


def with_bodies(sm: Any, commands: list[list[bytes]]) -> list[list[bytes]]:
    """``with_body`` of each command; ``commands`` itself when none is an EVALSHA[_RO] (the
    writes a node routes or forwards: no list built and no name upper-cased for them)."""
    for argv in commands:
        if len(argv[0]) in _WITH_BODY_LENGTHS and len(argv) > 1 and argv[0].upper() in _WITH_BODY:
            return [with_body(sm, a) for a in commands]
    return commands


_SCRIPT_HELP = [
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
]

# Subcommand arity over the whole argv (SCRIPT included), as Redis declares it.
_SCRIPT_ARITY = {b"LOAD": 3, b"EXISTS": -3, b"FLUSH": -2, b"KILL": 2, b"HELP": 2, b"DEBUG": 3}


def script_command(engine: ScriptEngine, argv: list[bytes]) -> Reply:
    """``SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`` on this node's cache.

    The cache is per node (not replicated, as in Redis), so the runtime
    answers SCRIPT itself (``runtime/commands.py``). KILL finds no script
    running (a script runs to its end within one state-machine step);
    DEBUG is refused (no Lua debugger).
    """
    sub = argv[1].upper()
    arity = _SCRIPT_ARITY.get(sub)
    if arity is None:
        name = argv[1].decode("utf-8", "replace")
        return RespError(f"ERR unknown subcommand '{name}'. Try SCRIPT HELP.")
    if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
        return RespError(
            f"ERR wrong number of arguments for 'script|{sub.decode().lower()}' command"
        )
    if sub == b"LOAD":
        try:
            return engine.load(argv[2])
        except RespError as err:
            return err
    if sub == b"EXISTS":
        return [0 if engine.body(sha) is None else 1 for sha in argv[2:]]
    if sub == b"FLUSH":
        if len(argv) > 3 or (len(argv) == 3 and argv[2].upper() not in (b"SYNC", b"ASYNC")):
            return RespError("ERR SCRIPT FLUSH only support SYNC|ASYNC option")
        engine.flush()
        return "OK"
    if sub == b"KILL":
        return RespError("NOTBUSY No scripts in execution right now.")
    if sub == b"DEBUG":
        return RespError("ERR SCRIPT DEBUG is not supported by replikv (no Lua debugger)")
    return _SCRIPT_HELP
