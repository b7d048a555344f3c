//! Declarative request rules: an ordered list, first match wins, all conditions of a rule
//! ANDed. A rule can route the request to another origin or group, rewrite what the
//! origin receives (path, Host, request headers), or answer it directly (a redirect, a
//! fixed response). Rules run before behavior matching, on the request as received; the
//! behavior is still chosen by the request's own path (its cache, allowed methods and
//! viewer policy apply), and a rule's route replaces only its target.
//!
//! Matching borrows from the parsed request and does not allocate; a rewrite allocates
//! the new path once, when a rule that rewrites has matched.

pub mod condition;
pub mod geo;
pub mod response;

use std::borrow::Cow;

pub use condition::{
    Cidr, Condition, PathTest, RuleRequest, SPLIT_BUCKETS, SplitKey, Test, TextTest,
};

use crate::config::Target;

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// For logs and `lb rules explain`.
    pub name: String,
    pub conditions: Vec<Condition>,
    pub actions: Actions,
}

/// What a matching rule does. A direct answer excludes the other actions (the config
/// refuses both).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Actions {
    /// Another origin or group than the behavior's target (and its id).
    pub route: Option<(Target, String)>,
    pub rewrite_path: Option<PathRewrite>,
    pub set_host: Option<String>,
    /// Replace (or add) these request fields.
    pub set_request_headers: Vec<(String, String)>,
    /// Add these request fields, keeping the client's of the same name.
    pub add_request_headers: Vec<(String, String)>,
    pub remove_request_headers: Vec<String>,
    /// Replace (or add) these fields of the response the client gets, whoever made it
    /// (an origin or the cache).
    pub set_response_headers: Vec<(String, String)>,
    pub remove_response_headers: Vec<String>,
    pub answer: Option<DirectAnswer>,
}

impl Actions {
    /// Whether the request the origin receives differs from the client's.
    pub fn edits_request(&self) -> bool {
        self.rewrite_path.is_some()
            || self.set_host.is_some()
            || !self.set_request_headers.is_empty()
            || !self.add_request_headers.is_empty()
            || !self.remove_request_headers.is_empty()
    }

    /// Whether a client field is dropped on its way to the origin (removed, or replaced
    /// by a value the rule sets).
    pub fn drops_field(&self, name: &str) -> bool {
        self.remove_request_headers
            .iter()
            .chain(self.set_request_headers.iter().map(|(n, _)| n))
            .any(|n| n.eq_ignore_ascii_case(name))
            || (self.set_host.is_some() && name.eq_ignore_ascii_case("host"))
    }

    pub fn edits_response(&self) -> bool {
        !self.set_response_headers.is_empty() || !self.remove_response_headers.is_empty()
    }

    /// Whether a response field is dropped on its way to the client.
    pub fn drops_response_field(&self, name: &str) -> bool {
        self.remove_response_headers
            .iter()
            .chain(self.set_response_headers.iter().map(|(n, _)| n))
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    pub fn added_response_fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.set_response_headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }

    /// The fields the rule adds (set and added ones), for the request builder.
    pub fn added_fields(&self) -> impl Iterator<Item = (&str, &[u8])> + Clone {
        self.set_request_headers
            .iter()
            .chain(&self.add_request_headers)
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum PathRewrite {
    /// Replace a leading `from` with `to`.
    Prefix { from: String, to: String },
    /// Replace the first match of `re` with `to` (`$1` and `${name}` refer to groups).
    Regex { re: RegexSource, to: String },
}

/// A compiled regex compared by its source (the config is compared on reload).
#[derive(Clone, Debug)]
pub struct RegexSource(pub regex::Regex);

impl PartialEq for RegexSource {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl PathRewrite {
    /// The target (path and query) the origin receives instead of `target`.
    pub fn apply<'t>(&self, target: &'t str) -> Cow<'t, str> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let new_path: Cow<'_, str> = match self {
            Self::Prefix { from, to } => match path.strip_prefix(from.as_str()) {
                Some(rest) => Cow::Owned(format!("{to}{rest}")),
                None => return Cow::Borrowed(target),
            },
            Self::Regex { re, to } => re.0.replace(path, to.as_str()),
        };
        let mut out = new_path.into_owned();
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if let Some(q) = query {
            out.push('?');
            out.push_str(q);
        }
        Cow::Owned(out)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DirectAnswer {
    /// `location` may hold `{host}`, `{path}` (without the query) and `{query}` (with
    /// its `?`, or nothing).
    Redirect { status: u16, location: String },
    Respond {
        status: u16,
        content_type: String,
        /// Fields of its own (names lower case; lb writes the framing ones).
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

impl DirectAnswer {
    /// A redirect's Location for this request.
    pub fn location(template: &str, host: &[u8], target: &str) -> Vec<u8> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut out = Vec::with_capacity(template.len() + target.len() + host.len());
        let mut rest = template;
        while let Some(at) = rest.find('{') {
            out.extend_from_slice(&rest.as_bytes()[..at]);
            let after = &rest[at..];
            let (value, skip): (&[u8], usize) = if after.starts_with("{host}") {
                (host, 6)
            } else if after.starts_with("{path}") {
                (path.as_bytes(), 6)
            } else if after.starts_with("{query}") {
                if !query.is_empty() {
                    out.push(b'?');
                }
                (query.as_bytes(), 7)
            } else {
                (b"{", 1)
            };
            out.extend_from_slice(value);
            rest = &after[skip..];
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }
}

/// Which rule matched: a global one or one of a behavior's, and its index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleRef {
    pub scope: RuleScope,
    pub index: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleScope {
    Global,
    /// `behaviors[i]`.
    Behavior(u16),
    DefaultBehavior,
}

/// The rules of a config, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One rule's verdict, for `lb rules explain`.
#[derive(Debug)]
pub struct Explained<'r> {
    pub rule: &'r Rule,
    /// The first condition that did not hold (None: the rule matched).
    pub failed: Option<&'r Condition>,
}

impl RuleSet {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule whose conditions all hold, with its index.
    pub fn first_match<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
        &self,
        req: &RuleRequest<'a, H>,
    ) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.conditions.iter().all(|c| c.holds(req)))
    }

    /// Every rule up to the first that matches, each with the condition that failed.
    pub fn explain<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
        &self,
        req: &RuleRequest<'a, H>,
    ) -> Vec<Explained<'_>> {
        let mut out = Vec::new();
        for rule in &self.rules {
            let failed = rule.conditions.iter().find(|c| !c.holds(req));
            out.push(Explained { rule, failed });
            if failed.is_none() {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_rewrites_keep_the_query() {
        let prefix = PathRewrite::Prefix {
            from: "/api/".into(),
            to: "/v2/".into(),
        };
        assert_eq!(prefix.apply("/api/users?x=1"), "/v2/users?x=1");
        assert_eq!(prefix.apply("/other"), "/other");
        let re = PathRewrite::Regex {
            re: RegexSource(regex::Regex::new("^/u/([0-9]+)$").unwrap()),
            to: "/users/$1/profile".into(),
        };
        assert_eq!(re.apply("/u/42?q"), "/users/42/profile?q");
        assert_eq!(re.apply("/u/x"), "/u/x");
        let strip = PathRewrite::Prefix {
            from: "/old".into(),
            to: "".into(),
        };
        assert_eq!(strip.apply("/old"), "/");
    }

    #[test]
    fn redirect_templates() {
        let loc = DirectAnswer::location("https://{host}/new{path}{query}", b"a.test", "/x?y=1");
        assert_eq!(loc, b"https://a.test/new/x?y=1");
        let loc = DirectAnswer::location("https://{host}{path}{query} {x}", b"a.test", "/x");
        assert_eq!(loc, b"https://a.test/x {x}");
    }

    #[test]
    fn the_first_matching_rule_wins_and_explain_says_why() {
        let rule = |name: &str, test: Test| Rule {
            name: name.into(),
            conditions: vec![Condition {
                test,
                negate: false,
            }],
            actions: Actions::default(),
        };
        let set = RuleSet {
            rules: vec![
                rule("posts", Test::Method(vec!["POST".into()])),
                rule("api", Test::Path(PathTest::Prefix("/api/".into()))),
                rule("all", Test::Path(PathTest::Prefix("/".into()))),
            ],
        };
        let fields: [(&str, &[u8]); 0] = [];
        let req = RuleRequest {
            method: "GET",
            host: None,
            target: "/api/x",
            fields: fields.iter().copied(),
            client: "127.0.0.1".parse().unwrap(),
            geo: &geo::Geo::default(),
        };
        let (i, r) = set.first_match(&req).unwrap();
        assert_eq!((i, r.name.as_str()), (1, "api"));
        let why = set.explain(&req);
        assert_eq!(why.len(), 2);
        assert_eq!(
            why[0].failed.map(Condition::describe).as_deref(),
            Some("method is one of POST")
        );
        assert!(why[1].failed.is_none());
    }
}
