//! Sign-in sessions of the dashboard. A session is a random id in an HttpOnly,
//! SameSite=Strict cookie; the server keeps, per id, the digest of the token the user
//! signed in with, the session's CSRF token and its expiry, in memory. The token itself
//! never goes into a cookie. Every request looks the digest up in the users again, so a
//! user revoked in the users file loses their sessions at its next reload.
use gridwatch_cases::User;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "gw_session";
/// The sign-in form's double-submit cookie (there is no session to hold its token yet).
pub(crate) const SIGNIN_CSRF_COOKIE: &str = "gw_signin";
/// The hidden field every form carries its CSRF token in.
pub(crate) const CSRF_FIELD: &str = "csrf";

/// How long a session lasts from sign-in, and how many there may be at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) ttl: Duration,
    pub(crate) max: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(12 * 3600),
            max: 10_000,
        }
    }
}

#[derive(Debug)]
struct Session {
    token_digest: String,
    csrf: String,
    expires: Instant,
}

/// The live sessions, shared by every request of one server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sessions {
    inner: Arc<Mutex<HashMap<String, Session>>>,
    limits: SessionLimits,
}

/// A signed-in session as a request sees it.
#[derive(Debug, Clone)]
pub(crate) struct Signed {
    pub(crate) id: String,
    pub(crate) csrf: String,
    pub(crate) user: User,
}

/// 32 random bytes as hex: a session id or a CSRF token nobody can guess.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn describe() {
    static DESCRIBED: std::sync::Once = std::sync::Once::new();
    DESCRIBED.call_once(|| {
        metrics::describe_gauge!("gridwatch_dashboard_sessions", "Dashboard sessions signed in now");
        metrics::describe_counter!(
            "gridwatch_dashboard_signins_total",
            "Dashboard sign-ins by result: ok, bad_token (unknown or revoked), bad_form (CSRF), full (session limit reached)"
        );
        metrics::describe_counter!(
            "gridwatch_dashboard_forms_refused_total",
            "Dashboard forms refused before acting, by reason: csrf (missing or wrong CSRF token)"
        );
    });
}

/// Why a session could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// [`SessionLimits::max`] sessions are live.
    Full,
}

impl Sessions {
    #[cfg(test)]
    pub(crate) fn with_limits(limits: SessionLimits) -> Self {
        Self {
            inner: Arc::default(),
            limits,
        }
    }

    /// Opens a session for the user of `token_digest`: its id and CSRF token.
    pub(crate) fn open(&self, token_digest: String, now: Instant) -> Result<(String, String), OpenError> {
        describe();
        let mut map = self.inner.lock().expect("sessions lock");
        if map.len() >= self.limits.max {
            map.retain(|_, s| s.expires > now);
        }
        if map.len() >= self.limits.max {
            return Err(OpenError::Full);
        }
        let (id, csrf) = (random_token(), random_token());
        map.insert(
            id.clone(),
            Session {
                token_digest,
                csrf: csrf.clone(),
                expires: now + self.limits.ttl,
            },
        );
        metrics::gauge!("gridwatch_dashboard_sessions").set(map.len() as f64);
        Ok((id, csrf))
    }

    /// The live session `id`, with its user as the users are now: `None` when expired,
    /// unknown, or its user was revoked (the session is dropped then).
    pub(crate) fn get(&self, id: &str, users: &crate::auth::Users, now: Instant) -> Option<Signed> {
        let mut map = self.inner.lock().expect("sessions lock");
        let session = map.get(id)?;
        let user = (session.expires > now)
            .then(|| users.by_digest(&session.token_digest))
            .flatten();
        match user {
            Some(user) => Some(Signed {
                id: id.to_string(),
                csrf: session.csrf.clone(),
                user,
            }),
            None => {
                map.remove(id);
                metrics::gauge!("gridwatch_dashboard_sessions").set(map.len() as f64);
                None
            }
        }
    }

    pub(crate) fn close(&self, id: &str) {
        let mut map = self.inner.lock().expect("sessions lock");
        map.remove(id);
        metrics::gauge!("gridwatch_dashboard_sessions").set(map.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Users;
    use crate::users_file::token_digest;

    fn user(id: &str) -> User {
        User {
            id: id.into(),
            name: id.into(),
            assignments: vec![],
        }
    }

    #[test]
    fn sessions_expire_are_bounded_and_follow_the_users() {
        let mut users = Users::new();
        users.add("tok-a", user("a"));
        let sessions = Sessions::with_limits(SessionLimits {
            ttl: Duration::from_secs(60),
            max: 2,
        });
        let t0 = Instant::now();
        let (a, csrf) = sessions.open(token_digest("tok-a"), t0).unwrap();
        assert_ne!(a, csrf);
        assert_eq!(a.len(), 64);
        let signed = sessions.get(&a, &users, t0).unwrap();
        assert_eq!((signed.user.id.as_str(), signed.csrf.as_str()), ("a", csrf.as_str()));
        assert!(sessions.get("nope", &users, t0).is_none());

        // Bounded: a third live session is refused, an expired one makes room.
        sessions.open(token_digest("tok-a"), t0).unwrap();
        assert_eq!(sessions.open(token_digest("tok-a"), t0), Err(OpenError::Full));
        let later = t0 + Duration::from_secs(61);
        assert!(sessions.get(&a, &users, later).is_none(), "expired");
        sessions.open(token_digest("tok-a"), later).unwrap();

        // A user no longer in the users loses the session.
        let (b, _) = sessions.open(token_digest("tok-b"), later).unwrap();
        assert!(sessions.get(&b, &users, later).is_none(), "tok-b is nobody's token");

        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
