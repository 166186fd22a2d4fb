//! Request extractors whose rejections are [`ApiError`] problem documents instead of
//! axum's plain-text bodies, so malformed JSON, query strings and paths are a clear 400
//! (and a body over the size limit a 413);
//! and the deserializers that hold request bodies to what the OpenAPI document says.

use std::fmt;
use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// `axum::Json` with a problem-document rejection. The body must be a JSON object: serde
/// would otherwise also read a struct from an array of its fields (`[5, "x"]`), which no
/// request schema allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<ObjectOnly<T>>::from_request(req, state).await {
            Ok(axum::Json(ObjectOnly(value))) => Ok(Json(value)),
            Err(rejection) => Err(ApiError::rejected(
                rejection.status(),
                rejection.body_text(),
            )),
        }
    }
}

/// `T`, read only from a JSON object.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        d.deserialize_map(ObjectVisitor(PhantomData))
            .map(ObjectOnly)
    }
}

/// Deserializes an `i32` from any JSON number with an integral value: JSON Schema's
/// `integer` includes `5.0`, so the API takes it as 5 (and refuses `5.5`).
pub fn int32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    d.deserialize_any(Int32Visitor)
}

/// [`int32`] for an optional field (use with `#[serde(default)]`); `null` is `None`.
pub fn opt_int32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<i32>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or null")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            int32(d).map(Some)
        }
    }

    d.deserialize_option(OptionVisitor)
}

struct Int32Visitor;

impl Int32Visitor {
    fn fit<E: serde::de::Error>(value: impl Into<i128> + fmt::Display + Copy) -> Result<i32, E> {
        i32::try_from(value.into()).map_err(|_| {
            E::custom(format!(
                "{value} is out of range: integers here are between -2147483648 and 2147483647"
            ))
        })
    }
}

impl Visitor<'_> for Int32Visitor {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i32, E> {
        Self::fit(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i32, E> {
        Self::fit(v)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i32, E> {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(E::custom(format!("{v} is not an integer")));
        }
        if v < f64::from(i32::MIN) || v > f64::from(i32::MAX) {
            return Err(E::custom(format!(
                "{v} is out of range: integers here are between -2147483648 and 2147483647"
            )));
        }
        Ok(v as i32)
    }
}

/// `axum::extract::Query` with a problem-document rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

/// `axum::extract::Path` with a problem-document rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

impl<T: serde::Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(deserialize_with = "int32")]
        n: i32,
        #[serde(default, deserialize_with = "opt_int32")]
        m: Option<i32>,
    }

    fn check(input: &str, expected: Result<(i32, Option<i32>), &str>) {
        let got = serde_json::from_str::<ObjectOnly<Body>>(input)
            .map(|ObjectOnly(b)| (b.n, b.m))
            .map_err(|err| err.to_string());
        match (&got, expected) {
            (Ok(got), Ok(expected)) => assert_eq!(*got, expected, "{input}"),
            (Err(got), Err(needle)) => assert!(got.contains(needle), "{input}: {got}"),
            _ => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn bodies_are_objects_and_integers_may_be_integral_floats() {
        check(r#"{"n": 5}"#, Ok((5, None)));
        check(r#"{"n": 5.0, "m": -2.0}"#, Ok((5, Some(-2))));
        check(r#"{"n": -0.0, "m": null}"#, Ok((0, None)));
        check(
            r#"{"n": 2147483647, "m": -2147483648}"#,
            Ok((i32::MAX, Some(i32::MIN))),
        );
        check(r#"{"n": 5.5}"#, Err("5.5 is not an integer"));
        check(r#"{"n": 2147483648}"#, Err("out of range"));
        check(r#"{"n": 1e10}"#, Err("out of range"));
        check(r#"{"n": -3000000000.0}"#, Err("out of range"));
        check(r#"{"n": "5"}"#, Err("expected an integer"));
        check(r#"{"n": null}"#, Err("expected an integer"));
        check(r#"{"m": 1}"#, Err("missing field `n`"));
        check(r#"{"n": 1, "x": 1}"#, Err("unknown field `x`"));
        check("[5, 1]", Err("expected a JSON object"));
        check("5", Err("expected a JSON object"));
        check("null", Err("expected a JSON object"));
    }
}
