//! Temporal's default JWT claim mapper: `authorization: Bearer <JWT>`, signed RS256 or ES256
//! by a key of the JWKS file (chosen by the token's `kid`), its `sub` the subject and its
//! `permissions` claim a list of `"<namespace>:<read|write|worker|admin>"` (`system:` for
//! the whole cluster).

use std::{collections::HashMap, path::Path};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};

use super::{ClaimMapper, Claims};

const PERMISSIONS_CLAIM: &str = "permissions";

pub struct JwtClaimMapper {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl JwtClaimMapper {
    /// The RSA and P-256 keys of a JWKS file; a key of another kind, or without `kid`, is
    /// refused rather than silently ignored.
    pub fn from_jwks_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a JWKS: {e}", path.display()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk
                .common
                .key_id
                .clone()
                .ok_or_else(|| format!("{}: a key without \"kid\"", path.display()))?;
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => {
                    return Err(format!(
                        "{}: key {kid:?} is neither RSA nor P-256 (RS256 and ES256 only)",
                        path.display()
                    ));
                }
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid:?}: {e}"))?;
            keys.insert(kid, (algorithm, key));
        }
        if keys.is_empty() {
            return Err(format!("{}: no keys", path.display()));
        }
        Ok(JwtClaimMapper { keys })
    }
}

impl ClaimMapper for JwtClaimMapper {
    fn claims(&self, authorization: Option<&str>) -> Result<Claims, String> {
        // No token: a caller with no roles (health checks and GetSystemInfo only).
        let Some(header) = authorization.filter(|h| !h.is_empty()) else {
            return Ok(Claims::default());
        };
        let (scheme, token) = header
            .split_once(' ')
            .ok_or("unexpected authorization token format")?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("unexpected name in authorization token".into());
        }
        let head = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        let kid = head.kid.ok_or("malformed token - no \"kid\" header")?;
        let (algorithm, key) = self
            .keys
            .get(&kid)
            .ok_or_else(|| format!("key not found for key ID: {kid}"))?;
        if head.alg != *algorithm {
            return Err(format!("unexpected signing algorithm: {:?}", head.alg));
        }
        let mut validation = Validation::new(*algorithm);
        // As Temporal's: exp and nbf are checked when present, none is required, no leeway,
        // and no audience unless one is configured (Dura has no such option yet).
        validation.required_spec_claims.clear();
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 0;
        let token = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map_err(|e| e.to_string())?;
        let subject = token
            .claims
            .get("sub")
            .and_then(|s| s.as_str())
            .ok_or("unexpected value type of \"sub\" claim")?;
        let mut claims = Claims {
            subject: subject.to_string(),
            ..Claims::default()
        };
        let permissions = token
            .claims
            .get(PERMISSIONS_CLAIM)
            .and_then(|p| p.as_array());
        for permission in permissions.into_iter().flatten() {
            match permission.as_str() {
                Some(p) if claims.grant(p) => {}
                _ => tracing::warn!(%permission, "ignoring a permission in an unexpected format"),
            }
        }
        Ok(claims)
    }
}
