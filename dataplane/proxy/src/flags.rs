//! Response flags: why a request ended the way it did, for access logs (`%response_flag%`)
//! and stats. Short codes follow Envoy's where one exists, so operators can read both.

use std::fmt;

/// A set of response flags (a bit set; empty means the upstream answered normally).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResponseFlags(u32);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:expr, $code:literal;)*) => {
        impl ResponseFlags {
            $($(#[$doc])* pub const $name: ResponseFlags = ResponseFlags(1 << $bit);)*
            const TABLE: &'static [(ResponseFlags, &'static str)] = &[$((ResponseFlags::$name, $code)),*];
        }
    };
}

flags! {
    /// No route matched the request (404).
    NO_ROUTE = 0, "NR";
    /// The cluster had no healthy host (503).
    NO_HEALTHY_UPSTREAM = 1, "UH";
    /// Connecting to the upstream failed (503).
    UPSTREAM_CONNECT_FAILURE = 2, "UF";
    /// The upstream did not answer within the route timeout (504).
    UPSTREAM_TIMEOUT = 3, "UT";
    /// A circuit breaker or pool limit refused the request (503).
    UPSTREAM_OVERFLOW = 4, "UO";
    /// Retries were exhausted.
    RETRY_LIMIT_EXCEEDED = 5, "URX";
    /// The fault filter delayed the request.
    DELAY_INJECTED = 6, "DI";
    /// The fault filter aborted the request.
    FAULT_INJECTED = 7, "FI";
    /// The rate limiter refused the request (429).
    RATE_LIMITED = 8, "RL";
    /// The `ip_access` filter denied the client (403).
    ACCESS_DENIED = 9, "DENY";
    /// The downstream went away before the response was complete.
    DOWNSTREAM_TERMINATION = 10, "DC";
    /// The downstream sent a malformed request (400).
    DOWNSTREAM_PROTOCOL_ERROR = 11, "DPE";
    /// The upstream sent a malformed response or reset the stream (502).
    UPSTREAM_PROTOCOL_ERROR = 12, "UPE";
    /// The upstream connection closed before the response was complete (502/503).
    UPSTREAM_TERMINATION = 13, "UC";
    /// The request body was larger than allowed (413).
    PAYLOAD_TOO_LARGE = 14, "PL";
    /// The cluster named by the route does not exist (503).
    NO_CLUSTER = 15, "NC";
    /// The proxy answered locally (redirect, direct response, filter reply).
    LOCAL_REPLY = 16, "LR";
}

impl ResponseFlags {
    /// No flag.
    pub const NONE: ResponseFlags = ResponseFlags(0);

    /// True when no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every flag of `other` is set here.
    pub fn contains(self, other: ResponseFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Sets the flags of `other`.
    pub fn insert(&mut self, other: ResponseFlags) {
        self.0 |= other.0;
    }

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for ResponseFlags {
    type Output = ResponseFlags;
    fn bitor(self, rhs: ResponseFlags) -> ResponseFlags {
        ResponseFlags(self.0 | rhs.0)
    }
}

/// Comma-separated short codes (`UF,URX`), or `-` when empty, as access logs print them.
impl fmt::Display for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        let mut first = true;
        for (flag, code) in Self::TABLE {
            if self.contains(*flag) {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(code)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ResponseFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::ResponseFlags as F;

    #[test]
    fn display_lists_codes_in_table_order() {
        assert_eq!(F::NONE.to_string(), "-");
        assert_eq!(
            (F::RETRY_LIMIT_EXCEEDED | F::UPSTREAM_CONNECT_FAILURE).to_string(),
            "UF,URX"
        );
        let mut f = F::NONE;
        f.insert(F::NO_ROUTE);
        assert!(f.contains(F::NO_ROUTE) && !f.contains(F::FAULT_INJECTED));
    }
}
