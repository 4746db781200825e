//! Faults injected into an engine for a positive control: the sim models
//! them itself; a process engine gets `fault_hook.py` as the `sitecustomize`
//! first on its `PYTHONPATH`, which patches LMCache as it is imported.

use std::borrow::Cow;
use std::path::Path;

use super::spec::EngineError;
use crate::config::{EngineConfig, FaultRoute};

/// The hook, as every engine that gets a fault is given it.
pub(crate) const HOOK: &str = include_str!("fault_hook.py");

/// The line an engine's log carries once the fault changed what it served
/// (the hook's and the sim's alike).
pub(crate) fn fired_line(fault: &str) -> String {
    format!("lmcache-e2e fault: {fault} fired")
}

/// The engine as launched with its fault, if it has one: the sim's option
/// set, or the hook written into `files_dir/fault/` and put on the path.
pub(crate) fn inject<'a>(
    e: &'a EngineConfig,
    files_dir: &Path,
) -> Result<Cow<'a, EngineConfig>, EngineError> {
    let Some(fault) = e.fault else {
        return Ok(Cow::Borrowed(e));
    };
    let mut e = e.clone();
    match e.kind.row().fault {
        FaultRoute::SimOption => {
            e.sim.get_or_insert_with(Default::default).kv_fault = Some(fault);
        }
        // A kind that refuses faults never gets here: the control's
        // validation names it first.
        FaultRoute::PythonHook | FaultRoute::Refused => {
            let dir = files_dir.join("fault");
            let path = dir.join("sitecustomize.py");
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, HOOK))
                .map_err(|source| EngineError::State { path, source })?;
            let inherited = e
                .env
                .get("PYTHONPATH")
                .cloned()
                .or_else(|| std::env::var("PYTHONPATH").ok())
                .filter(|p| !p.is_empty());
            let path = match inherited {
                Some(rest) => format!("{}:{rest}", dir.display()),
                None => dir.display().to_string(),
            };
            e.env.insert("PYTHONPATH".into(), path);
            e.env
                .insert("LMCACHE_E2E_FAULT".into(), fault.as_str().to_string());
        }
    }
    Ok(Cow::Owned(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A stand-in `lmcache` package with LMCache's names: a GPU connector
    /// whose `batched_to_gpu` calls `to_gpu` per chunk, and a cache engine
    /// whose `lookup` answers a token count. Tensors are plain lists with
    /// the two in-place methods the hook uses.
    const FAKE: &[(&str, &str)] = &[
        ("lmcache/__init__.py", ""),
        ("lmcache/v1/__init__.py", ""),
        (
            "lmcache/v1/gpu_connector.py",
            "class T:\n    def __init__(s, v): s.v = list(v)\n    def mul_(s, k): s.v = [x * k for x in s.v]; return s\n    def add_(s, k): s.v = [x + k for x in s.v]; return s\n\
class Obj:\n    def __init__(s, v): s.tensor = T(v)\n\
class VLLMPagedMemGPUConnectorV2:\n    def __init__(s): s.gpu = []\n    def to_gpu(s, obj, start, end, **kw): s.gpu.append(list(obj.tensor.v))\n    def batched_to_gpu(s, objs, starts, ends, **kw):\n        for o, a, b in zip(objs, starts, ends): s.to_gpu(o, a, b)\n",
        ),
        (
            "lmcache/v1/cache_engine.py",
            "class LMCacheEngine:\n    def lookup(s, tokens, **kw): return len(tokens)\n",
        ),
    ];

    const DRIVE: &str =
        "from lmcache.v1.gpu_connector import Obj, VLLMPagedMemGPUConnectorV2 as C\n\
from lmcache.v1.cache_engine import LMCacheEngine\n\
c = C(); c.batched_to_gpu([Obj([2.0, 4.0]), Obj([0.0])], [0, 1], [1, 2])\n\
print('gpu', c.gpu)\n\
print('lookup', LMCacheEngine().lookup([1, 2, 3]))\n";

    fn process_engine() -> EngineConfig {
        toml::from_str("role = 'lmcache'\nkind = 'process'\ncommand = 'python3'").unwrap()
    }

    fn drive(fault: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in FAKE {
            let p = dir.path().join("site").join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let mut e = process_engine();
        e.fault = serde_json::from_value(serde_json::json!(fault)).ok();
        e.env.insert(
            "PYTHONPATH".to_string(),
            dir.path().join("site").display().to_string(),
        );
        let e = inject(&e, dir.path()).unwrap();
        let out = Command::new("python3")
            .args(["-c", DRIVE])
            .envs(e.env.iter())
            .output()
            .expect("python3 runs (scripts/test.sh installs it)");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn corrupt_kv_spoils_each_restored_chunk_once_and_says_so() {
        let (out, err) = drive("corrupt-kv");
        assert!(out.contains("gpu [[2.0, 3.0], [1.0]]"), "{out}{err}");
        assert!(out.contains("lookup 3"), "{out}");
        assert!(err.contains("corrupt-kv armed on lmcache.v1.gpu_connector.VLLMPagedMemGPUConnectorV2.batched_to_gpu"), "{err}");
        assert!(err.contains(&fired_line("corrupt-kv")), "{err}");
    }

    #[test]
    fn drop_first_chunk_makes_every_lookup_find_nothing() {
        let (out, err) = drive("drop-first-chunk");
        assert!(out.contains("gpu [[2.0, 4.0], [0.0]]"), "{out}{err}");
        assert!(out.contains("lookup 0"), "{out}{err}");
        assert!(
            err.contains("drop-first-chunk armed on lmcache.v1.cache_engine.LMCacheEngine.lookup"),
            "{err}"
        );
    }

    #[test]
    fn slow_retrieve_leaves_values_right() {
        let (out, err) = drive("slow-retrieve");
        assert!(out.contains("gpu [[2.0, 4.0], [0.0]]"), "{out}{err}");
        assert!(err.contains(&fired_line("slow-retrieve")), "{err}");
    }

    #[test]
    fn no_fault_leaves_the_engine_as_configured() {
        let e = process_engine();
        assert!(matches!(
            inject(&e, Path::new("/nowhere")),
            Ok(Cow::Borrowed(_))
        ));
    }
}
