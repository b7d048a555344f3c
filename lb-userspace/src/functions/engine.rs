//! Running a function: one QuickJS runtime per thread (the data-plane worker's), one
//! context per function source, compiled once and kept while the source stays the same.
//! A deadline enforced by the interrupt handler bounds CPU time; the runtime's memory
//! limit bounds the heap. A function that runs out of either is abandoned and its
//! context dropped, so the next call starts clean.

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use rquickjs::{Context, Function, Object, Persistent, Runtime};

use super::{FunctionError, FunctionKind, FunctionLimits};

/// What the user's source finds around it, as in Node and CloudFront Functions:
/// `module`/`exports`; `console` (its output goes to lb's log at debug level, target
/// `lb::functions::console`); and `require` for the built-in module published functions
/// use most, `querystring` (Node's parse/stringify/escape/unescape semantics). Any other
/// module is an error when the script loads, so `lb check` reports it.
const PRELUDE: &str = r#"var module = { exports: {} }; var exports = module.exports;
var __lb_console = [];
var console = (function () {
  function text(args) {
    var parts = [];
    for (var i = 0; i < args.length; i++) {
      var a = args[i];
      if (typeof a === 'string' || a === undefined || typeof a === 'function' || a instanceof Error) { parts.push(String(a)); continue; }
      try { parts.push(JSON.stringify(a)); } catch (e) { parts.push(String(a)); }
    }
    return parts.join(' ');
  }
  function at(level) { return function () { if (__lb_console.length < 32) __lb_console.push(level, text(arguments)); }; }
  return { log: at('log'), info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
})();
var require = (function () {
  function unescape(s) {
    try { return decodeURIComponent(s); } catch (e) {
      return s.replace(/%([0-9a-fA-F]{2})/g, function (_, h) { return String.fromCharCode(parseInt(h, 16)); });
    }
  }
  function primitive(v) {
    if (typeof v === 'string') return v;
    if (typeof v === 'number') return isFinite(v) ? String(v) : '';
    if (typeof v === 'bigint' || typeof v === 'boolean') return String(v);
    return '';
  }
  var querystring = {
    escape: function (s) { return encodeURIComponent(s); },
    unescape: unescape,
    parse: function (str, sep, eq) {
      sep = sep || '&'; eq = eq || '=';
      var out = Object.create(null);
      if (typeof str !== 'string' || str.length === 0) return out;
      var pairs = str.split(sep);
      for (var i = 0; i < pairs.length; i++) {
        if (pairs[i].length === 0) continue;
        var at = pairs[i].indexOf(eq);
        var k = at >= 0 ? pairs[i].slice(0, at) : pairs[i];
        var v = at >= 0 ? pairs[i].slice(at + eq.length) : '';
        k = unescape(k.replace(/\+/g, ' ')); v = unescape(v.replace(/\+/g, ' '));
        if (!(k in out)) out[k] = v;
        else if (Array.isArray(out[k])) out[k].push(v);
        else out[k] = [out[k], v];
      }
      return out;
    },
    stringify: function (obj, sep, eq) {
      sep = sep || '&'; eq = eq || '=';
      if (obj === null || typeof obj !== 'object') return '';
      var parts = [];
      var keys = Object.keys(obj);
      for (var i = 0; i < keys.length; i++) {
        var k = encodeURIComponent(primitive(keys[i])) + eq;
        var v = obj[keys[i]];
        if (Array.isArray(v)) {
          for (var j = 0; j < v.length; j++) parts.push(k + encodeURIComponent(primitive(v[j])));
        } else {
          parts.push(k + encodeURIComponent(primitive(v)));
        }
      }
      return parts.join(sep);
    }
  };
  querystring.decode = querystring.parse;
  querystring.encode = querystring.stringify;
  var modules = { querystring: querystring };
  return function require(name) {
    var m = modules[String(name).replace(/^node:/, '')];
    if (!m) throw new Error("Cannot find module '" + name + "' (lb provides: querystring)");
    return m;
  };
})();
"#;

/// The longest console line kept in the log.
const CONSOLE_LINE: usize = 2048;

/// `console.*` from a function: to lb's log at debug level (a function that logs on
/// every request must not flood the log at the default level). The lines wait in the
/// context's `__lb_console` (level, text, ...; at most 16 lines per invocation) until the call
/// ends.
fn console_line(level: &str, text: &str) {
    let mut end = text.len().min(CONSOLE_LINE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    tracing::debug!(target: "lb::functions::console", level, "{}", &text[..end]);
}

/// Calls the handler with Lambda@Edge's three arguments and collects the answer from
/// whichever way it comes: the callback, a returned value, or a Promise.
const CALLER: &str = r#"(function (eventJson) {
  var handler = module.exports.handler || exports.handler;
  var out = { done: false, error: null, result: null };
  var callback = function (err, result) {
    if (out.done) return;
    out.done = true;
    if (err) { out.error = String(err) + (err && err.stack ? '\n' + err.stack : ''); } else { out.result = result; }
  };
  if (typeof handler !== 'function') { out.done = true; out.error = 'exports.handler is not a function'; return out; }
  var context = { functionName: 'lb', callbackWaitsForEmptyEventLoop: false };
  var r = handler(JSON.parse(eventJson), context, callback);
  if (r && typeof r.then === 'function') {
    r.then(function (v) { callback(null, v); }, function (e) { callback(e || new Error('rejected')); });
  } else if (r !== undefined) {
    callback(null, r);
  }
  return out;
})"#;

/// Calls CloudFront Functions' `handler(event)` and collects its answer (a value or a
/// Promise).
const CF_CALLER: &str = r#"(function (eventJson) {
  var out = { done: false, error: null, result: null };
  if (typeof handler !== 'function') { out.done = true; out.error = 'the script defines no function handler(event)'; return out; }
  var r = handler(JSON.parse(eventJson));
  if (r && typeof r.then === 'function') {
    r.then(function (v) { out.done = true; out.result = v; },
           function (e) { out.done = true; out.error = String(e) + (e && e.stack ? '\n' + e.stack : ''); });
  } else {
    out.done = true;
    out.result = r === undefined ? null : r;
  }
  return out;
})"#;

struct Compiled {
    context: Context,
    caller: Persistent<Function<'static>>,
}

/// Fields drop in order: the compiled contexts (and the values they keep) before the
/// runtime, which QuickJS requires.
struct Engine {
    compiled: HashMap<u64, Compiled>,
    runtime: Runtime,
    /// Set by the deadline check; read by the interrupt handler.
    deadline: Rc<RefCell<Option<Instant>>>,
    timed_out: Arc<AtomicBool>,
}

thread_local! {
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
}

fn key(source: &str, kind: FunctionKind) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ kind as u64;
    for b in source.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn new_engine(limits: FunctionLimits) -> Result<Engine, FunctionError> {
    let runtime = Runtime::new().map_err(|e| FunctionError::Compile(e.to_string()))?;
    runtime.set_memory_limit(limits.memory);
    runtime.set_max_stack_size(256 << 10);
    let deadline: Rc<RefCell<Option<Instant>>> = Rc::default();
    let timed_out = Arc::new(AtomicBool::new(false));
    let (d, t) = (Rc::clone(&deadline), Arc::clone(&timed_out));
    runtime.set_interrupt_handler(Some(Box::new(move || {
        let late = d.borrow().is_some_and(|at| Instant::now() >= at);
        if late {
            t.store(true, Ordering::Relaxed);
        }
        late
    })));
    Ok(Engine {
        compiled: HashMap::new(),
        runtime,
        deadline,
        timed_out,
    })
}

fn compile(runtime: &Runtime, source: &str, kind: FunctionKind) -> Result<Compiled, FunctionError> {
    let context = Context::full(runtime).map_err(|e| FunctionError::Compile(e.to_string()))?;
    let caller = context.with(|ctx| -> Result<_, FunctionError> {
        let describe = |e: rquickjs::Error| -> FunctionError {
            let thrown = ctx.catch();
            let text = thrown
                .as_exception()
                .map(|x| format!("{}", x))
                .unwrap_or_else(|| e.to_string());
            FunctionError::Compile(text)
        };
        ctx.eval::<(), _>(PRELUDE).map_err(describe)?;
        ctx.eval::<(), _>(source).map_err(describe)?;
        let caller: Function = ctx
            .eval(match kind {
                FunctionKind::LambdaEdge => CALLER,
                FunctionKind::CloudFrontFunction => CF_CALLER,
            })
            .map_err(describe)?;
        Ok(Persistent::save(&ctx, caller))
    })?;
    Ok(Compiled { context, caller })
}

/// Compiles `source` in a runtime of its own: the check `lb check` and a reload make.
/// The handler must exist once the script ran.
pub fn check(source: &str, kind: FunctionKind) -> Result<(), FunctionError> {
    let engine = new_engine(FunctionLimits::default())?;
    let compiled = compile(&engine.runtime, source, kind)?;
    let probe = match kind {
        FunctionKind::LambdaEdge => "typeof (module.exports.handler || exports.handler)",
        FunctionKind::CloudFrontFunction => "typeof handler",
    };
    let found: String = compiled.context.with(|ctx| {
        ctx.eval::<String, _>(probe)
            .map_err(|e| FunctionError::Compile(e.to_string()))
    })?;
    if found == "function" {
        return Ok(());
    }
    Err(FunctionError::Compile(match kind {
        FunctionKind::LambdaEdge => "the script does not set exports.handler to a function".into(),
        FunctionKind::CloudFrontFunction => "the script defines no function handler(event)".into(),
    }))
}

/// Runs the function whose source is `source` with `event` (JSON text); its answer as
/// JSON text (`null` when it answered nothing).
pub fn invoke(
    source: &str,
    kind: FunctionKind,
    limits: FunctionLimits,
    event: &str,
) -> Result<String, FunctionError> {
    ENGINE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(new_engine(limits)?);
        }
        let Some(engine) = slot.as_mut() else {
            return Err(FunctionError::Compile("no engine".into()));
        };
        engine.runtime.set_memory_limit(limits.memory);
        let k = key(source, kind);
        if !engine.compiled.contains_key(&k) {
            // Sources of past reloads are dropped once there are many.
            if engine.compiled.len() >= 64 {
                engine.compiled.clear();
            }
            let compiled = compile(&engine.runtime, source, kind)?;
            engine.compiled.insert(k, compiled);
        }
        engine.timed_out.store(false, Ordering::Relaxed);
        *engine.deadline.borrow_mut() = Some(Instant::now() + limits.time);
        let result = run(engine, k, event);
        *engine.deadline.borrow_mut() = None;
        if result.is_err() {
            // A context that threw out of memory or time may be in any state: start over.
            if matches!(result, Err(FunctionError::Timeout | FunctionError::Memory)) {
                engine.compiled.remove(&k);
                engine.runtime.run_gc();
            }
        }
        result
    })
}

fn run(engine: &Engine, k: u64, event: &str) -> Result<String, FunctionError> {
    let Some(compiled) = engine.compiled.get(&k) else {
        return Err(FunctionError::Compile("not compiled".into()));
    };
    let timed_out = &engine.timed_out;
    let classify = |text: String| -> FunctionError {
        if timed_out.load(Ordering::Relaxed) {
            FunctionError::Timeout
        } else if text.contains("out of memory") {
            FunctionError::Memory
        } else {
            FunctionError::Threw(text)
        }
    };
    let out: Persistent<Object<'static>> = compiled.context.with(|ctx| {
        let caller = compiled
            .caller
            .clone()
            .restore(&ctx)
            .map_err(|e| classify(e.to_string()))?;
        let out: Object = caller.call((event,)).map_err(|e| {
            let thrown = ctx.catch();
            classify(
                thrown
                    .as_exception()
                    .map(|x| format!("{}", x))
                    .unwrap_or_else(|| e.to_string()),
            )
        })?;
        Ok::<_, FunctionError>(Persistent::save(&ctx, out))
    })?;
    // Promises settle as their jobs run (bounded by the same deadline).
    loop {
        match engine.runtime.execute_pending_job() {
            Ok(true) => continue,
            Ok(false) => break,
            Err(_) => {
                if timed_out.load(Ordering::Relaxed) {
                    return Err(FunctionError::Timeout);
                }
                break;
            }
        }
    }
    compiled.context.with(|ctx| {
        flush_console(&ctx);
        let out = out.restore(&ctx).map_err(|e| classify(e.to_string()))?;
        let done: bool = out.get("done").unwrap_or(false);
        if !done {
            return Err(FunctionError::Invalid(
                "it never called back nor returned".into(),
            ));
        }
        let error: Option<String> = out.get("error").unwrap_or(None);
        if let Some(e) = error {
            return Err(classify(e));
        }
        let result: rquickjs::Value = out.get("result").map_err(|e| classify(e.to_string()))?;
        let json = ctx
            .json_stringify(result)
            .map_err(|e| classify(e.to_string()))?
            .map(|s| s.to_string())
            .transpose()
            .map_err(|e| classify(e.to_string()))?;
        Ok(json.unwrap_or_else(|| "null".into()))
    })
}

/// Logs what the invocation wrote to `console` and empties the buffer.
fn flush_console(ctx: &rquickjs::Ctx<'_>) {
    let Ok(lines) = ctx.globals().get::<_, rquickjs::Array>("__lb_console") else {
        return;
    };
    if lines.is_empty() {
        return;
    }
    let mut items = lines.iter::<String>().flatten();
    while let (Some(level), Some(text)) = (items.next(), items.next()) {
        console_line(&level, &text);
    }
    let _ = lines.as_object().set("length", 0);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LE: FunctionKind = FunctionKind::LambdaEdge;

    fn limits() -> FunctionLimits {
        FunctionLimits {
            time: Duration::from_millis(100),
            memory: 16 << 20,
        }
    }

    #[test]
    fn callbacks_returns_and_promises_all_answer() {
        let cb = "exports.handler = (e, c, callback) => { callback(null, { n: e.n + 1 }); };";
        assert_eq!(
            invoke(cb, LE, limits(), r#"{"n":1}"#).unwrap(),
            r#"{"n":2}"#
        );
        let ret = "exports.handler = (e) => ({ n: e.n * 2 });";
        assert_eq!(
            invoke(ret, LE, limits(), r#"{"n":4}"#).unwrap(),
            r#"{"n":8}"#
        );
        let promise = "exports.handler = async (e) => { await null; return { ok: true }; };";
        assert_eq!(
            invoke(promise, LE, limits(), "{}").unwrap(),
            r#"{"ok":true}"#
        );
        let module = "module.exports.handler = function (e, c, cb) { cb(null, 'x'); };";
        assert_eq!(invoke(module, LE, limits(), "{}").unwrap(), r#""x""#);
    }

    /// What published functions expect around them: Node's `querystring` with its
    /// semantics, `console`, and a clear error for a module lb does not have.
    #[test]
    fn querystring_and_console_behave_as_in_node() {
        let qs = r#"const querystring = require('querystring');
exports.handler = (e) => {
  const p = querystring.parse(e.q);
  console.log('parsed', p, 3, undefined);
  const auth = p.auth; delete p.auth;
  return { auth: auth, rest: querystring.stringify(p), multi: p.a, space: p.s };
};"#;
        let out = invoke(
            qs,
            LE,
            limits(),
            r#"{"q":"a=1&auth=t%20k&a=2&s=x+y&odd=%zz&flag&e=%C3%A9"}"#,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["auth"], "t k");
        assert_eq!(v["multi"], serde_json::json!(["1", "2"]));
        assert_eq!(v["space"], "x y");
        // Order kept, arrays repeated, malformed escapes passed through, re-escaped.
        assert_eq!(v["rest"], "a=1&a=2&s=x%20y&odd=%25zz&flag=&e=%C3%A9");
        let missing = "const fs = require('fs'); exports.handler = () => 1;";
        let err = check(missing, LE).unwrap_err().to_string();
        assert!(err.contains("Cannot find module 'fs'"), "{err}");
        assert!(
            check(
                "require('node:querystring'); exports.handler = () => 1;",
                LE
            )
            .is_ok()
        );
    }

    #[test]
    fn throwing_looping_and_allocating_functions_fail_cleanly() {
        let throws = "exports.handler = () => { throw new Error('boom'); };";
        assert!(
            matches!(invoke(throws, LE, limits(), "{}"), Err(FunctionError::Threw(t)) if t.contains("boom"))
        );
        let errs = "exports.handler = (e, c, cb) => cb(new Error('no'));";
        assert!(matches!(
            invoke(errs, LE, limits(), "{}"),
            Err(FunctionError::Threw(_))
        ));
        let rejects = "exports.handler = async () => { throw new Error('later'); };";
        assert!(
            matches!(invoke(rejects, LE, limits(), "{}"), Err(FunctionError::Threw(t)) if t.contains("later"))
        );
        let started = Instant::now();
        let spins = "exports.handler = () => { for (;;) {} };";
        assert_eq!(
            invoke(spins, LE, limits(), "{}"),
            Err(FunctionError::Timeout)
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let hog =
            "exports.handler = () => { const a = []; for (;;) a.push(new Array(10000).fill(1)); };";
        let r = invoke(hog, LE, limits(), "{}");
        assert!(
            matches!(r, Err(FunctionError::Memory | FunctionError::Timeout)),
            "{r:?}"
        );
        let silent = "exports.handler = () => {};";
        assert!(matches!(
            invoke(silent, LE, limits(), "{}"),
            Err(FunctionError::Invalid(_))
        ));
        // The worker's engine still serves afterwards.
        let ok = "exports.handler = () => 1;";
        assert_eq!(invoke(ok, LE, limits(), "{}").unwrap(), "1");
    }

    #[test]
    fn cloudfront_functions_are_called_with_the_event_alone() {
        let cf = FunctionKind::CloudFrontFunction;
        let src = "function handler(event) { var r = event.request; r.uri = r.uri + 'index.html'; return r; }";
        assert!(check(src, cf).is_ok());
        assert_eq!(
            invoke(src, cf, limits(), r#"{"request":{"uri":"/a/"}}"#).unwrap(),
            r#"{"uri":"/a/index.html"}"#
        );
        let lambda_style = "exports.handler = (e, c, cb) => cb(null, 1);";
        assert!(
            matches!(check(lambda_style, cf), Err(FunctionError::Compile(t)) if t.contains("handler(event)"))
        );
        assert!(
            check(src, LE).is_err(),
            "a CloudFront Function is not a Lambda@Edge one"
        );
    }

    #[test]
    fn check_refuses_what_does_not_compile_or_has_no_handler() {
        assert!(check("exports.handler = () => 1;", LE).is_ok());
        assert!(matches!(
            check("exports.handler = (", LE),
            Err(FunctionError::Compile(_))
        ));
        assert!(
            matches!(check("var x = 1;", LE), Err(FunctionError::Compile(t)) if t.contains("exports.handler"))
        );
    }
}
