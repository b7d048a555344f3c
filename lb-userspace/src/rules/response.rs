//! Declarative response rules: the seed-001 case without code. They run on the final
//! origin answer, after any origin-response function and before custom error responses
//! (which then see the rule's status), first match wins: change the status, set or
//! remove headers, or replace the body.

use super::{PathTest, TextTest};

/// What a response rule tests.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseTest {
    /// One of these statuses.
    Status(Vec<u16>),
    /// A status in `[lo, hi]`.
    StatusRange(u16, u16),
    /// The origin that answered is one of these (indices into the config's origins).
    Origin(Vec<usize>),
    /// The request's path.
    Path(PathTest),
    /// A field of the response.
    Header { name: String, test: TextTest },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ResponseCondition {
    pub test: ResponseTest,
    pub negate: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseRule {
    pub name: String,
    pub conditions: Vec<ResponseCondition>,
    pub set_status: Option<u16>,
    pub set_headers: Vec<(String, String)>,
    pub remove_headers: Vec<String>,
    /// Replaces the origin's body (the origin's connection is then closed).
    pub body: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseRuleSet {
    pub rules: Vec<ResponseRule>,
}

/// The parts of a final answer response rules look at.
pub struct RuleResponse<'a, H> {
    pub status: u16,
    pub origin: usize,
    /// The request's path (and query).
    pub target: &'a str,
    pub fields: H,
}

impl ResponseCondition {
    pub fn holds<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
        &self,
        r: &RuleResponse<'a, H>,
    ) -> bool {
        let path = || r.target.split('?').next().unwrap_or("");
        let result = match &self.test {
            ResponseTest::Status(list) => list.contains(&r.status),
            ResponseTest::StatusRange(lo, hi) => (*lo..=*hi).contains(&r.status),
            ResponseTest::Origin(list) => list.contains(&r.origin),
            ResponseTest::Path(PathTest::Glob(p)) => p.matches(path()),
            ResponseTest::Path(PathTest::Exact(p)) => path() == p,
            ResponseTest::Path(PathTest::Prefix(p)) => path().starts_with(p.as_str()),
            ResponseTest::Path(PathTest::Regex(t)) => t.passes(Some(path().as_bytes())),
            ResponseTest::Header { name, test } => test.passes(
                r.fields
                    .clone()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v),
            ),
        };
        result != self.negate
    }
}

impl ResponseRule {
    /// The head this rule leaves: status and every field, given the answer's.
    pub fn apply<'a>(
        &self,
        status: u16,
        fields: impl Iterator<Item = (&'a str, &'a [u8])>,
    ) -> (u16, Vec<(String, String)>) {
        let replacing_body = self.body.is_some();
        let mut headers: Vec<(String, String)> = fields
            .filter(|(n, _)| {
                !self
                    .remove_headers
                    .iter()
                    .chain(self.set_headers.iter().map(|(s, _)| s))
                    .any(|d| d.eq_ignore_ascii_case(n))
                    && !(replacing_body
                        && (n.eq_ignore_ascii_case("content-type")
                            || n.eq_ignore_ascii_case("content-encoding")
                            || n.eq_ignore_ascii_case("etag")
                            || n.eq_ignore_ascii_case("last-modified")))
            })
            .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        if let (true, Some(ct)) = (replacing_body, &self.content_type) {
            headers.push(("content-type".into(), ct.clone()));
        }
        headers.extend(self.set_headers.iter().cloned());
        (self.set_status.unwrap_or(status), headers)
    }
}

impl ResponseRuleSet {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn first_match<'a, H: Iterator<Item = (&'a str, &'a [u8])> + Clone>(
        &self,
        r: &RuleResponse<'a, H>,
    ) -> Option<&ResponseRule> {
        self.rules
            .iter()
            .find(|rule| rule.conditions.iter().all(|c| c.holds(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_what_a_rule_leaves() {
        let fields = [
            ("Content-Type", b"text/html".as_slice()),
            ("Server", b"origin"),
            ("X-Keep", b"1"),
        ];
        let r = RuleResponse {
            status: 503,
            origin: 1,
            target: "/api/x?y=1",
            fields: fields.iter().copied(),
        };
        let c = |test| ResponseCondition {
            test,
            negate: false,
        };
        assert!(c(ResponseTest::Status(vec![502, 503])).holds(&r));
        assert!(c(ResponseTest::StatusRange(500, 599)).holds(&r));
        assert!(!c(ResponseTest::StatusRange(400, 499)).holds(&r));
        assert!(c(ResponseTest::Origin(vec![1])).holds(&r));
        assert!(c(ResponseTest::Path(PathTest::Prefix("/api/".into()))).holds(&r));
        assert!(
            c(ResponseTest::Header {
                name: "server".into(),
                test: TextTest::Equals("origin".into())
            })
            .holds(&r)
        );
        let not = ResponseCondition {
            test: ResponseTest::Origin(vec![1]),
            negate: true,
        };
        assert!(!not.holds(&r));
        let rule = ResponseRule {
            name: "page".into(),
            set_status: Some(200),
            set_headers: vec![("x-rule".into(), "1".into())],
            remove_headers: vec!["server".into()],
            body: Some(b"Body generation example".to_vec()),
            content_type: Some("text/plain".into()),
            ..ResponseRule::default()
        };
        let (status, headers) = rule.apply(503, fields.iter().copied());
        assert_eq!(status, 200);
        assert_eq!(
            headers,
            [
                ("X-Keep".to_owned(), "1".to_owned()),
                ("content-type".to_owned(), "text/plain".to_owned()),
                ("x-rule".to_owned(), "1".to_owned()),
            ]
        );
    }
}
