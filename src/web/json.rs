//! JS values to JSON, refusing what JSON cannot hold. `JSON.stringify` and
//! serde-wasm-bindgen turn a `Date` or a `Map` into `{}` and drop
//! `undefined`, so a write would store something other than what the page
//! meant; here such a value is `BAD_ARGUMENT` naming its path, and nothing
//! is written.

use crate::client::ClientError;
use js_sys::{Array, Object, Reflect};
use serde_json::{Map, Number, Value};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 64;

/// `v` as JSON, or `BAD_ARGUMENT` naming the first value (by `path`) that
/// is not JSON: `undefined`, a non-finite number, a bigint, a symbol, a
/// function, an object that is not a plain object or array (Date, Map, Set,
/// RegExp, typed arrays, class instances), a cycle, or nesting deeper than
/// [`MAX_DEPTH`].
pub fn to_json(v: &JsValue, path: &str) -> Result<Value, ClientError> {
    let plain = Object::get_prototype_of(&Object::new());
    let mut ancestors = Vec::new();
    convert(v, path, &plain, &mut ancestors)
}

fn refuse(path: &str, what: &str) -> ClientError {
    ClientError::bad_argument(format!("{path}: {what} is not JSON"))
}

fn convert(
    v: &JsValue,
    path: &str,
    plain: &Object,
    ancestors: &mut Vec<JsValue>,
) -> Result<Value, ClientError> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    if v.is_undefined() {
        return Err(refuse(path, "undefined"));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Some(s) = v.as_string() {
        return Ok(Value::String(s));
    }
    if let Some(n) = v.as_f64() {
        if !n.is_finite() {
            return Err(refuse(path, "a number that is not finite (NaN, Infinity)"));
        }
        let number = if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_991.0 {
            Number::from(n as i64)
        } else {
            Number::from_f64(n).ok_or_else(|| refuse(path, "this number"))?
        };
        return Ok(Value::Number(number));
    }
    if v.is_bigint() {
        return Err(refuse(path, "a bigint"));
    }
    if v.is_symbol() {
        return Err(refuse(path, "a symbol"));
    }
    if v.is_function() {
        return Err(refuse(path, "a function"));
    }
    if !v.is_object() {
        return Err(refuse(path, "this value"));
    }
    if ancestors.iter().any(|a| Object::is(a, v)) {
        return Err(refuse(path, "a cycle"));
    }
    if ancestors.len() >= MAX_DEPTH {
        return Err(ClientError::bad_argument(format!(
            "{path}: nested deeper than {MAX_DEPTH} levels"
        )));
    }
    ancestors.push(v.clone());
    let out = if Array::is_array(v) {
        let a: &Array = v.unchecked_ref();
        let mut items = Vec::with_capacity(a.length() as usize);
        for (i, item) in a.iter().enumerate() {
            items.push(convert(&item, &format!("{path}[{i}]"), plain, ancestors)?);
        }
        Value::Array(items)
    } else {
        let obj: &Object = v.unchecked_ref();
        let proto = Object::get_prototype_of(obj);
        if !(proto.is_null() || Object::is(&proto, plain)) {
            let name = Reflect::get(obj, &"constructor".into())
                .ok()
                .and_then(|c| Reflect::get(&c, &"name".into()).ok())
                .and_then(|n| n.as_string())
                .unwrap_or_else(|| "object".into());
            return Err(refuse(path, &format!("a {name}")));
        }
        let mut map = Map::new();
        for key in Object::keys(obj).iter() {
            let k = key.as_string().unwrap_or_default();
            let field = Reflect::get(obj, &key)
                .map_err(|_| ClientError::bad_argument(format!("{path}.{k}: cannot be read")))?;
            map.insert(
                k.clone(),
                convert(&field, &format!("{path}.{k}"), plain, ancestors)?,
            );
        }
        Value::Object(map)
    };
    ancestors.pop();
    Ok(out)
}
