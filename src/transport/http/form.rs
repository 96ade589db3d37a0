//! `application/x-www-form-urlencoded` request bodies of the OAuth
//! endpoints (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1). A parameter
//! sent twice is refused (RFC 6749 §3.1), as is any other content type.
use axum::http::{header, HeaderMap};

use super::oauth_error::OAuthError;

/// Largest form body accepted: a refresh token or an access token and a
/// few short parameters.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, OAuthError> {
        let form_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(body) {
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {name} is sent more than once"
                )));
            }
            fields.push((name.into_owned(), value.into_owned()));
        }
        Ok(Self(fields))
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required parameter.
    pub fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is missing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        h
    }

    #[test]
    fn fields_are_decoded_and_empty_ones_are_absent() {
        let form = Form::parse(&form_headers(), b"token=a%2Bb+c&hint=&x=1").unwrap();
        assert_eq!(form.get("token"), Some("a+b c"));
        assert_eq!(form.get("hint"), None);
        assert!(form.required("hint").is_err());
        assert_eq!(form.required("x").unwrap(), "1");
    }

    #[test]
    fn repeated_parameters_and_other_types_are_refused() {
        assert!(Form::parse(&form_headers(), b"token=a&token=b").is_err());
        assert!(Form::parse(&HeaderMap::new(), b"token=a").is_err());
        let mut json = HeaderMap::new();
        json.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(Form::parse(&json, b"{}").is_err());
    }
}
