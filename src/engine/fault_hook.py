# lmcache-e2e's fault hook: a `sitecustomize` that lmcache-e2e puts first on
# an engine's PYTHONPATH for a positive control. It patches LMCache as its
# modules are imported (LMCache's files stay untouched) so that the KV it
# restores is wrong, missing or slow, and says on stderr (the engine's log)
# what it armed and when it first fired. LMCACHE_E2E_FAULT names the fault:
#   corrupt-kv        every chunk written back to the GPU is scaled and shifted
#   drop-first-chunk  lookups find nothing (a prefix without its first chunk
#                     cannot be used), so every prompt is recomputed
#   slow-retrieve     each chunk written back waits LMCACHE_E2E_FAULT_DELAY_MS
#                     (default 50) first
# Python runs one `sitecustomize`; the one this hides is run after it.
import importlib.abc
import importlib.util
import os
import sys
import threading
import time

_FAULT = os.environ.get("LMCACHE_E2E_FAULT", "")
_DELAY = float(os.environ.get("LMCACHE_E2E_FAULT_DELAY_MS", "50")) / 1000.0
_KNOWN = ("corrupt-kv", "drop-first-chunk", "slow-retrieve")
# Methods that write restored KV back into the engine's paged GPU cache
# (LMCache's GPU connectors), and those that say how much of a prompt is
# stored (the cache engine's and the multiprocess server's lookups).
_TO_GPU = ("batched_to_gpu", "to_gpu")
_LOOKUP = ("lookup",)
_state = threading.local()
_fired = [False]
_lock = threading.Lock()


def _say(msg):
    sys.stderr.write("lmcache-e2e fault: %s\n" % msg)
    sys.stderr.flush()


def _fire():
    with _lock:
        if _fired[0]:
            return
        _fired[0] = True
    _say("%s fired (pid %d)" % (_FAULT, os.getpid()))


def _tensors(objs):
    if objs is None:
        return
    if not isinstance(objs, (list, tuple)):
        objs = [objs]
    for o in objs:
        if isinstance(o, (list, tuple)):
            for t in _tensors(o):
                yield t
            continue
        t = getattr(o, "tensor", None)
        if t is not None:
            yield t


def _spoil(objs):
    for t in _tensors(objs):
        # Not an involution: applied again it still leaves the values wrong.
        t.mul_(0.5).add_(1.0)
        _fire()


def _wrap_to_gpu(fn):
    def wrapper(self, *args, **kwargs):
        # batched_to_gpu may call to_gpu per chunk: spoil each chunk once.
        if getattr(_state, "inside", False):
            return fn(self, *args, **kwargs)
        _state.inside = True
        try:
            objs = args[0] if args else kwargs.get("memory_objs", kwargs.get("memory_obj"))
            if _FAULT == "corrupt-kv":
                _spoil(objs)
            elif _FAULT == "slow-retrieve":
                n = sum(1 for _ in _tensors(objs)) or 1
                time.sleep(_DELAY * n)
                _fire()
            return fn(self, *args, **kwargs)
        finally:
            _state.inside = False

    wrapper.__wrapped__ = fn
    return wrapper


def _wrap_lookup(fn):
    def wrapper(self, *args, **kwargs):
        found = fn(self, *args, **kwargs)
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            _fire()
            return 0
        return found

    wrapper.__wrapped__ = fn
    return wrapper


def _patch_module(module):
    names = _LOOKUP if _FAULT == "drop-first-chunk" else _TO_GPU
    wrap = _wrap_lookup if _FAULT == "drop-first-chunk" else _wrap_to_gpu
    for attr, cls in list(vars(module).items()):
        if not isinstance(cls, type) or getattr(cls, "__module__", None) != module.__name__:
            continue
        for name in names:
            fn = cls.__dict__.get(name)
            if callable(fn) and not hasattr(fn, "__wrapped__"):
                setattr(cls, name, wrap(fn))
                _say("%s armed on %s.%s.%s" % (_FAULT, module.__name__, attr, name))


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        try:
            _patch_module(module)
        except Exception as e:  # the engine must start whatever happens here
            _say("failed to patch %s: %r" % (module.__name__, e))


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if not (name == "lmcache" or name.startswith("lmcache.")):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def _chain():
    """Runs the sitecustomize this one hides, if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if not entry or os.path.abspath(entry) == here:
            continue
        candidate = os.path.join(entry, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_lmcache_e2e_next_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


if _FAULT in _KNOWN:
    sys.meta_path.insert(0, _Finder())
    for _name, _mod in list(sys.modules.items()):
        if _name == "lmcache" or _name.startswith("lmcache."):
            _patch_module(_mod)
elif _FAULT:
    _say("unknown fault %r; known: %s; nothing armed" % (_FAULT, ", ".join(_KNOWN)))
_chain()
