//! `[[rules]]` in the native TOML: the file's shape, its validation into
//! [`crate::rules::RuleSet`] (errors at file:line:column), and the way back for export.
//!
//! ```toml
//! [[rules]]
//! name = "beta testers to the canary"
//! when = [
//!   { path_prefix = "/api/" },
//!   { header = "x-beta", equals = "1" },
//!   { cookie = "opt-out", present = true, not = true },
//! ]
//! route = "canary"
//! set_request_headers = { x-canary = "1" }
//! ```

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{ConfigError, PathPattern, Target, native::Locator};
use crate::rules::{
    Actions, Cidr, Condition, DirectAnswer, PathRewrite, PathTest, RegexSource, Rule, RuleSet,
    SPLIT_BUCKETS, SplitKey, Test, TextTest,
    geo::{ClientAddress, Geo, GeoDb},
    response::{ResponseCondition, ResponseRule, ResponseRuleSet, ResponseTest},
};

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub name: String,
    /// All must hold (none: the rule matches every request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Spanned<ConditionFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<Spanned<RewriteFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_host: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_request_headers: BTreeMap<String, String>,
    /// Added next to the client's fields of the same name (`set_request_headers`
    /// replaces them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add_request_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_request_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_response_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_response_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Spanned<RedirectFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond: Option<Spanned<RespondFile>>,
}

/// One condition: a subject (`host`, `path`, `path_exact`, `path_prefix`, `path_regex`,
/// `method`, `header`, `cookie`, `query`, `client`) and, for header/cookie/query, one
/// operator; `not = true` inverts it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Vec<String>>,
    /// ISO country codes (upper case); needs `[geo] country_database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<Vec<String>>,
    /// Autonomous system numbers; needs `[geo] asn_database`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<Vec<u32>>,
    /// `[from, to]` in percent: the share of requests whose `by` key hashes there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<[f64; 2]>,
    /// What a split hashes: `cookie:NAME`, `header:NAME`, `query:NAME` or `client`
    /// (the default; also the fallback when the request has no such value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RewriteFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    pub to: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RedirectFile {
    #[serde(default = "default_redirect_status")]
    pub status: u16,
    pub location: String,
}

fn default_redirect_status() -> u16 {
    302
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RespondFile {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// Fields of the answer besides Content-Type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn default_content_type() -> String {
    "text/plain".into()
}

fn regex(
    loc: &Locator<'_>,
    span: std::ops::Range<usize>,
    field: &str,
    source: &str,
) -> Result<regex::Regex, ConfigError> {
    // Bounded compile size: a rule cannot make lb build a huge automaton.
    regex::RegexBuilder::new(source)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| loc.err(span, field, format!("bad regex: {e}")))
}

fn condition(
    c: &Spanned<ConditionFile>,
    field: &str,
    loc: &Locator<'_>,
    geo: &Geo,
) -> Result<Condition, ConfigError> {
    let span = c.span();
    let f = c.get_ref();
    let err = |msg: String| loc.err(span.clone(), field, msg);
    let operators: Vec<TextTest> = [
        f.equals.clone().map(TextTest::Equals),
        f.prefix.clone().map(TextTest::Prefix),
        f.suffix.clone().map(TextTest::Suffix),
        f.contains.clone().map(TextTest::Contains),
        f.present.then_some(TextTest::Present),
        f.absent.then_some(TextTest::Absent),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut operators = operators;
    if let Some(re) = &f.regex {
        operators.push(TextTest::Regex(regex(loc, span.clone(), field, re)?));
    }
    let subjects = [
        f.host.is_some(),
        f.path.is_some(),
        f.path_exact.is_some(),
        f.path_prefix.is_some(),
        f.path_regex.is_some(),
        f.method.is_some(),
        f.header.is_some(),
        f.cookie.is_some(),
        f.query.is_some(),
        f.client.is_some(),
        f.split.is_some(),
        f.country.is_some(),
        f.asn.is_some(),
    ]
    .into_iter()
    .filter(|&s| s)
    .count();
    if subjects != 1 {
        return Err(err(format!(
            "a condition tests exactly one of host, path, path_exact, path_prefix, path_regex, method, header, cookie, query, client, split, country, asn (found {subjects})"
        )));
    }
    if f.by.is_some() && f.split.is_none() {
        return Err(err("`by` belongs to a split condition".into()));
    }
    let named = f.header.is_some() || f.cookie.is_some() || f.query.is_some();
    if named && operators.len() != 1 {
        return Err(err(
            "a header, cookie or query condition needs exactly one of equals, prefix, suffix, contains, regex, present = true, absent = true".into(),
        ));
    }
    if !named && !operators.is_empty() {
        return Err(err(
            "equals/prefix/suffix/contains/regex/present/absent apply to header, cookie and query conditions only".into(),
        ));
    }
    let mut operator = operators.into_iter();
    let test = if let Some(h) = &f.host {
        Test::Host(h.to_ascii_lowercase())
    } else if let Some(p) = &f.path {
        Test::Path(PathTest::Glob(PathPattern::new(p)))
    } else if let Some(p) = &f.path_exact {
        Test::Path(PathTest::Exact(p.clone()))
    } else if let Some(p) = &f.path_prefix {
        Test::Path(PathTest::Prefix(p.clone()))
    } else if let Some(p) = &f.path_regex {
        Test::Path(PathTest::Regex(TextTest::Regex(regex(
            loc,
            span.clone(),
            field,
            p,
        )?)))
    } else if let Some(m) = &f.method {
        if m.is_empty()
            || m.iter()
                .any(|m| m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(err(
                "method: a list of upper-case methods such as [\"GET\", \"HEAD\"]".into(),
            ));
        }
        Test::Method(m.clone())
    } else if let Some(codes) = &f.country {
        if geo.country.is_none() {
            return Err(err(
                "a country condition needs [geo] country_database".into()
            ));
        }
        if codes.is_empty()
            || codes
                .iter()
                .any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(err(
                "country: a list of ISO 3166 codes in upper case, such as [\"DE\", \"FR\"]".into(),
            ));
        }
        Test::Country(codes.clone())
    } else if let Some(asns) = &f.asn {
        if geo.asn.is_none() {
            return Err(err("an asn condition needs [geo] asn_database".into()));
        }
        if asns.is_empty() {
            return Err(err("asn: list at least one AS number".into()));
        }
        Test::Asn(asns.clone())
    } else if let Some([from, to]) = f.split {
        if !(0.0..=100.0).contains(&from) || !(0.0..=100.0).contains(&to) || from > to {
            return Err(err(format!(
                "split = [{from}, {to}]: a range of percentages, 0 <= from <= to <= 100"
            )));
        }
        let by = f.by.as_deref().unwrap_or("client");
        let key = SplitKey::parse(by).ok_or_else(|| {
            err(format!(
                "by = \"{by}\": use cookie:NAME, header:NAME, query:NAME or client"
            ))
        })?;
        let buckets = |p: f64| (p * f64::from(SPLIT_BUCKETS) / 100.0).round() as u32;
        Test::Split {
            from: buckets(from),
            to: buckets(to),
            key,
        }
    } else if let Some(client) = &f.client {
        let nets = client
            .iter()
            .map(|c| {
                Cidr::parse(c)
                    .ok_or_else(|| err(format!("`{c}` is not an address or a CIDR network")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if nets.is_empty() {
            return Err(err("client: list at least one network".into()));
        }
        Test::Client(nets)
    } else {
        let test = operator.next().unwrap_or(TextTest::Present);
        if let Some(name) = &f.header {
            Test::Header {
                name: name.to_ascii_lowercase(),
                test,
            }
        } else if let Some(name) = &f.cookie {
            Test::Cookie {
                name: name.clone(),
                test,
            }
        } else {
            Test::Query {
                name: f.query.clone().unwrap_or_default(),
                test,
            }
        }
    };
    Ok(Condition {
        test,
        negate: f.not,
    })
}

fn valid_field_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_field_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

/// Fields lb writes itself or that frame the message: a rule may not set or remove them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

fn is_reserved(name: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

pub(super) fn build(
    raw: &[Spanned<RuleFile>],
    names: &HashMap<String, Target>,
    loc: &Locator<'_>,
    geo: &Geo,
    prefix: &str,
) -> Result<RuleSet, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let span = r.span();
        let f = r.get_ref();
        let field = |s: &str| format!("{prefix}rules[{i}].{s}");
        if f.name.trim().is_empty() {
            return Err(loc.err(span.clone(), field("name"), "give the rule a name"));
        }
        let conditions = f
            .when
            .iter()
            .enumerate()
            .map(|(j, c)| condition(c, &field(&format!("when[{j}]")), loc, geo))
            .collect::<Result<Vec<_>, _>>()?;
        let route = match &f.route {
            None => None,
            Some(id) => match names.get(id.get_ref()) {
                Some(t) => Some((*t, id.get_ref().clone())),
                None => {
                    return Err(loc.err(
                        id.span(),
                        field("route"),
                        format!("no origin or origin group `{}`", id.get_ref()),
                    ));
                }
            },
        };
        let rewrite_path = match &f.rewrite_path {
            None => None,
            Some(rw) => {
                let w = rw.get_ref();
                match (&w.prefix, &w.regex) {
                    (Some(from), None) if from.starts_with('/') => Some(PathRewrite::Prefix {
                        from: from.clone(),
                        to: w.to.clone(),
                    }),
                    (None, Some(re)) => Some(PathRewrite::Regex {
                        re: RegexSource(regex(loc, rw.span(), &field("rewrite_path.regex"), re)?),
                        to: w.to.clone(),
                    }),
                    _ => {
                        return Err(loc.err(
                            rw.span(),
                            field("rewrite_path"),
                            "give exactly one of prefix (starting with /) and regex, with `to`",
                        ));
                    }
                }
            }
        };
        if let Some(rw) = &f.rewrite_path
            && (!valid_field_value(&rw.get_ref().to) || rw.get_ref().to.contains([' ', '#']))
        {
            return Err(loc.err(
                rw.span(),
                field("rewrite_path.to"),
                "the new path may not hold spaces, '#' or control characters",
            ));
        }
        let request_fields = [
            (&f.set_request_headers, "set_request_headers"),
            (&f.add_request_headers, "add_request_headers"),
        ];
        for (fields, which) in request_fields {
            for (name, value) in fields {
                if !valid_field_name(name) || !valid_field_value(value) {
                    return Err(loc.err(
                        span.clone(),
                        field(which),
                        format!("`{name}: {value}` is not a valid header field"),
                    ));
                }
            }
        }
        for (name, value) in &f.set_response_headers {
            if !valid_field_name(name) || !valid_field_value(value) {
                return Err(loc.err(
                    span.clone(),
                    field("set_response_headers"),
                    format!("`{name}: {value}` is not a valid header field"),
                ));
            }
        }
        let reserved = f
            .set_request_headers
            .keys()
            .chain(&f.remove_request_headers)
            .map(|n| (n, "set_request_headers"))
            .chain(
                f.add_request_headers
                    .keys()
                    .map(|n| (n, "add_request_headers")),
            )
            .chain(
                f.set_response_headers
                    .keys()
                    .chain(&f.remove_response_headers)
                    .map(|n| (n, "set_response_headers")),
            );
        for (name, which) in reserved {
            if is_reserved(name) {
                return Err(loc.err(
                    span.clone(),
                    field(which),
                    format!("`{name}` is written by lb itself (use set_host for Host)"),
                ));
            }
        }
        if let Some(h) = &f.set_host
            && (h.is_empty() || !valid_field_value(h) || h.contains(' '))
        {
            return Err(loc.err(
                span.clone(),
                field("set_host"),
                format!("`{h}` is not a host"),
            ));
        }
        let answer = match (&f.redirect, &f.respond) {
            (Some(_), Some(_)) => {
                return Err(loc.err(
                    span.clone(),
                    field("redirect"),
                    "a rule either redirects or responds, not both",
                ));
            }
            (Some(r), None) => {
                let rd = r.get_ref();
                if !matches!(rd.status, 301 | 302 | 303 | 307 | 308) {
                    return Err(loc.err(
                        r.span(),
                        field("redirect.status"),
                        format!(
                            "{} is not a redirect status (301, 302, 303, 307, 308)",
                            rd.status
                        ),
                    ));
                }
                if rd.location.is_empty() || !valid_field_value(&rd.location) {
                    return Err(loc.err(
                        r.span(),
                        field("redirect.location"),
                        "not a valid Location",
                    ));
                }
                Some(DirectAnswer::Redirect {
                    status: rd.status,
                    location: rd.location.clone(),
                })
            }
            (None, Some(r)) => {
                let rs = r.get_ref();
                if !(200..=599).contains(&rs.status) || matches!(rs.status, 204 | 304) {
                    return Err(loc.err(
                        r.span(),
                        field("respond.status"),
                        format!(
                            "{} cannot carry a body (use 200-599 but 204 and 304)",
                            rs.status
                        ),
                    ));
                }
                if !valid_field_value(&rs.content_type) {
                    return Err(loc.err(
                        r.span(),
                        field("respond.content_type"),
                        "not a valid field value",
                    ));
                }
                for (name, value) in &rs.headers {
                    let why = if !valid_field_name(name) || !valid_field_value(value) {
                        format!("`{name}: {value}` is not a valid header field")
                    } else if name.eq_ignore_ascii_case("content-type") {
                        "give Content-Type as respond.content_type".to_owned()
                    } else if is_reserved(name) || name.eq_ignore_ascii_case("via") {
                        format!("`{name}` is written by lb itself")
                    } else {
                        continue;
                    };
                    return Err(loc.err(r.span(), field("respond.headers"), why));
                }
                Some(DirectAnswer::Respond {
                    status: rs.status,
                    content_type: rs.content_type.clone(),
                    headers: rs
                        .headers
                        .iter()
                        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                        .collect(),
                    body: rs.body.clone().into_bytes(),
                })
            }
            (None, None) => None,
        };
        let actions = Actions {
            route,
            rewrite_path,
            set_host: f.set_host.clone(),
            set_request_headers: f
                .set_request_headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            add_request_headers: f
                .add_request_headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            remove_request_headers: f
                .remove_request_headers
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            set_response_headers: f
                .set_response_headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            remove_response_headers: f
                .remove_response_headers
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            answer,
        };
        if actions.answer.is_some()
            && (actions.route.is_some() || actions.edits_request() || actions.edits_response())
        {
            return Err(loc.err(
                span.clone(),
                field("redirect"),
                "a rule that answers directly cannot also route, rewrite or set headers (nothing reaches an origin)",
            ));
        }
        if actions.answer.is_none()
            && actions.route.is_none()
            && !actions.edits_request()
            && !actions.edits_response()
        {
            return Err(loc.err(
                span.clone(),
                field("name"),
                "the rule does nothing: give it route, rewrite_path, set_host, set/add/remove_request_headers, set/remove_response_headers, redirect or respond",
            ));
        }
        rules.push(Rule {
            name: f.name.clone(),
            conditions,
            actions,
        });
    }
    Ok(RuleSet { rules })
}

/// The way back, for `lb check --print` and conversions.
pub(super) fn export(set: &RuleSet) -> Vec<Spanned<RuleFile>> {
    set.rules
        .iter()
        .map(|r| {
            let a = &r.actions;
            let file = RuleFile {
                name: r.name.clone(),
                when: r
                    .conditions
                    .iter()
                    .map(|c| Spanned::new(0..0, export_condition(c)))
                    .collect(),
                route: a
                    .route
                    .as_ref()
                    .map(|(_, id)| Spanned::new(0..0, id.clone())),
                rewrite_path: a.rewrite_path.as_ref().map(|rw| {
                    Spanned::new(
                        0..0,
                        match rw {
                            PathRewrite::Prefix { from, to } => RewriteFile {
                                prefix: Some(from.clone()),
                                regex: None,
                                to: to.clone(),
                            },
                            PathRewrite::Regex { re, to } => RewriteFile {
                                prefix: None,
                                regex: Some(re.0.as_str().to_owned()),
                                to: to.clone(),
                            },
                        },
                    )
                }),
                set_host: a.set_host.clone(),
                set_request_headers: a.set_request_headers.iter().cloned().collect(),
                add_request_headers: a.add_request_headers.iter().cloned().collect(),
                remove_request_headers: a.remove_request_headers.clone(),
                set_response_headers: a.set_response_headers.iter().cloned().collect(),
                remove_response_headers: a.remove_response_headers.clone(),
                redirect: match &a.answer {
                    Some(DirectAnswer::Redirect { status, location }) => Some(Spanned::new(
                        0..0,
                        RedirectFile {
                            status: *status,
                            location: location.clone(),
                        },
                    )),
                    _ => None,
                },
                respond: match &a.answer {
                    Some(DirectAnswer::Respond {
                        status,
                        content_type,
                        headers,
                        body,
                    }) => Some(Spanned::new(
                        0..0,
                        RespondFile {
                            status: *status,
                            body: String::from_utf8_lossy(body).into_owned(),
                            content_type: content_type.clone(),
                            headers: headers.iter().cloned().collect(),
                        },
                    )),
                    _ => None,
                },
            };
            Spanned::new(0..0, file)
        })
        .collect()
}

fn export_condition(c: &Condition) -> ConditionFile {
    let mut f = ConditionFile {
        not: c.negate,
        ..ConditionFile::default()
    };
    let operator = |t: &TextTest, f: &mut ConditionFile| match t {
        TextTest::Equals(s) => f.equals = Some(s.clone()),
        TextTest::Prefix(s) => f.prefix = Some(s.clone()),
        TextTest::Suffix(s) => f.suffix = Some(s.clone()),
        TextTest::Contains(s) => f.contains = Some(s.clone()),
        TextTest::Regex(re) => f.regex = Some(re.as_str().to_owned()),
        TextTest::Present => f.present = true,
        TextTest::Absent => f.absent = true,
    };
    match &c.test {
        Test::Host(h) => f.host = Some(h.clone()),
        Test::Path(PathTest::Glob(p)) => f.path = Some(p.as_str().to_owned()),
        Test::Path(PathTest::Exact(p)) => f.path_exact = Some(p.clone()),
        Test::Path(PathTest::Prefix(p)) => f.path_prefix = Some(p.clone()),
        Test::Path(PathTest::Regex(TextTest::Regex(re))) => {
            f.path_regex = Some(re.as_str().to_owned())
        }
        Test::Path(PathTest::Regex(_)) => {}
        Test::Method(m) => f.method = Some(m.clone()),
        Test::Client(nets) => f.client = Some(nets.iter().map(Cidr::to_string).collect()),
        Test::Country(codes) => f.country = Some(codes.clone()),
        Test::Asn(asns) => f.asn = Some(asns.clone()),
        Test::Split { from, to, key } => {
            let percent = |b: &u32| f64::from(*b) * 100.0 / f64::from(SPLIT_BUCKETS);
            f.split = Some([percent(from), percent(to)]);
            f.by = Some(key.to_string());
        }
        Test::Header { name, test } => {
            f.header = Some(name.clone());
            operator(test, &mut f);
        }
        Test::Cookie { name, test } => {
            f.cookie = Some(name.clone());
            operator(test, &mut f);
        }
        Test::Query { name, test } => {
            f.query = Some(name.clone());
            operator(test, &mut f);
        }
    }
    f
}

/// `[geo]`: the MaxMind databases country and asn conditions read (paths relative to
/// the config file).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GeoFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_database: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn_database: Option<Spanned<String>>,
}

/// `[client_address]`: which address rules see as the client's.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientAddressFile {
    /// Peers whose forwarded header is believed.
    pub trusted_proxies: Spanned<Vec<String>>,
    #[serde(default = "default_forwarded_header")]
    pub header: String,
}

fn default_forwarded_header() -> String {
    "x-forwarded-for".into()
}

pub(super) fn build_geo(
    raw: Option<&GeoFile>,
    base_dir: Option<&std::path::Path>,
    loc: &Locator<'_>,
) -> Result<Geo, ConfigError> {
    let Some(raw) = raw else {
        return Ok(Geo::default());
    };
    let open = |f: &Option<Spanned<String>>, field: &str, want: &str| -> Result<_, ConfigError> {
        let Some(f) = f else { return Ok(None) };
        let path = base_dir
            .unwrap_or(std::path::Path::new("."))
            .join(f.get_ref());
        let db = GeoDb::open(&path).map_err(|e| loc.err(f.span(), field, e))?;
        if !db.kind().contains(want) {
            return Err(loc.err(
                f.span(),
                field,
                format!(
                    "{} is a {} database, not a {want} one",
                    path.display(),
                    db.kind()
                ),
            ));
        }
        Ok(Some(std::sync::Arc::new(db)))
    };
    Ok(Geo {
        country: open(&raw.country_database, "geo.country_database", "Country")?,
        asn: open(&raw.asn_database, "geo.asn_database", "ASN")?,
    })
}

pub(super) fn build_client_address(
    raw: Option<&ClientAddressFile>,
    loc: &Locator<'_>,
) -> Result<ClientAddress, ConfigError> {
    let Some(raw) = raw else {
        return Ok(ClientAddress::default());
    };
    let trusted_proxies = raw
        .trusted_proxies
        .get_ref()
        .iter()
        .map(|c| {
            Cidr::parse(c).ok_or_else(|| {
                loc.err(
                    raw.trusted_proxies.span(),
                    "client_address.trusted_proxies",
                    format!("`{c}` is not an address or a CIDR network"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !valid_field_name(&raw.header) {
        return Err(loc.err(
            raw.trusted_proxies.span(),
            "client_address.header",
            format!("`{}` is not a header name", raw.header),
        ));
    }
    Ok(ClientAddress {
        trusted_proxies,
        header: raw.header.to_ascii_lowercase(),
    })
}

pub(super) fn export_geo(geo: &Geo) -> Option<GeoFile> {
    let path = |db: &Option<std::sync::Arc<GeoDb>>| {
        db.as_ref()
            .map(|d| Spanned::new(0..0, d.path().display().to_string()))
    };
    (geo.country.is_some() || geo.asn.is_some()).then(|| GeoFile {
        country_database: path(&geo.country),
        asn_database: path(&geo.asn),
    })
}

pub(super) fn export_client_address(c: &ClientAddress) -> Option<ClientAddressFile> {
    (!c.trusted_proxies.is_empty()).then(|| ClientAddressFile {
        trusted_proxies: Spanned::new(
            0..0,
            c.trusted_proxies.iter().map(Cidr::to_string).collect(),
        ),
        header: c.header.clone(),
    })
}

/// `[[response_rules]]`: on the final origin answer, first match wins.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseRuleFile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Spanned<ResponseConditionFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_status: Option<u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<String>,
    /// The new body, inline (or `body_file`, relative to the config).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// One condition: `status`, `status_range`, `origin`, a path test, or a response
/// `header` with one operator; `not = true` inverts it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResponseConditionFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<u16>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_range: Option<[u16; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub present: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub absent: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not: bool,
}

pub(super) fn build_response(
    raw: &[Spanned<ResponseRuleFile>],
    names: &HashMap<String, Target>,
    loc: &Locator<'_>,
    base_dir: Option<&std::path::Path>,
) -> Result<ResponseRuleSet, ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let span = r.span();
        let f = r.get_ref();
        let field = |s: &str| format!("response_rules[{i}].{s}");
        if f.name.trim().is_empty() {
            return Err(loc.err(span.clone(), field("name"), "give the rule a name"));
        }
        let mut conditions = Vec::new();
        for (j, c) in f.when.iter().enumerate() {
            let at = field(&format!("when[{j}]"));
            let cf = c.get_ref();
            let err = |msg: String| loc.err(c.span(), at.clone(), msg);
            let operators: Vec<TextTest> = [
                cf.equals.clone().map(TextTest::Equals),
                cf.prefix.clone().map(TextTest::Prefix),
                cf.suffix.clone().map(TextTest::Suffix),
                cf.contains.clone().map(TextTest::Contains),
                cf.present.then_some(TextTest::Present),
                cf.absent.then_some(TextTest::Absent),
            ]
            .into_iter()
            .flatten()
            .collect();
            let mut operators = operators;
            if let Some(re) = &cf.regex {
                operators.push(TextTest::Regex(regex(loc, c.span(), &at, re)?));
            }
            let subjects = [
                cf.status.is_some(),
                cf.status_range.is_some(),
                cf.origin.is_some(),
                cf.path.is_some(),
                cf.path_exact.is_some(),
                cf.path_prefix.is_some(),
                cf.path_regex.is_some(),
                cf.header.is_some(),
            ]
            .into_iter()
            .filter(|&s| s)
            .count();
            if subjects != 1 {
                return Err(err(format!(
                    "a condition tests exactly one of status, status_range, origin, path, path_exact, path_prefix, path_regex, header (found {subjects})"
                )));
            }
            if cf.header.is_some() != (operators.len() == 1) || operators.len() > 1 {
                return Err(err(
                    "a header condition needs exactly one of equals, prefix, suffix, contains, regex, present = true, absent = true (and only it takes one)".into(),
                ));
            }
            let test = if let Some(list) = &cf.status {
                if list.is_empty() || list.iter().any(|s| !(100..=599).contains(s)) {
                    return Err(err("status: a list of status codes 100-599".into()));
                }
                ResponseTest::Status(list.clone())
            } else if let Some([lo, hi]) = cf.status_range {
                if lo > hi || hi > 599 {
                    return Err(err(format!("status_range = [{lo}, {hi}]: lo <= hi <= 599")));
                }
                ResponseTest::StatusRange(lo, hi)
            } else if let Some(ids) = &cf.origin {
                let mut list = Vec::new();
                for id in ids {
                    match names.get(id) {
                        Some(Target::Origin(o)) => list.push(*o),
                        _ => return Err(err(format!("no origin `{id}` (groups are not origins)"))),
                    }
                }
                ResponseTest::Origin(list)
            } else if let Some(p) = &cf.path {
                ResponseTest::Path(PathTest::Glob(PathPattern::new(p)))
            } else if let Some(p) = &cf.path_exact {
                ResponseTest::Path(PathTest::Exact(p.clone()))
            } else if let Some(p) = &cf.path_prefix {
                ResponseTest::Path(PathTest::Prefix(p.clone()))
            } else if let Some(p) = &cf.path_regex {
                ResponseTest::Path(PathTest::Regex(TextTest::Regex(regex(
                    loc,
                    c.span(),
                    &at,
                    p,
                )?)))
            } else {
                ResponseTest::Header {
                    name: cf.header.clone().unwrap_or_default().to_ascii_lowercase(),
                    test: operators.pop().unwrap_or(TextTest::Present),
                }
            };
            conditions.push(ResponseCondition {
                test,
                negate: cf.not,
            });
        }
        if let Some(s) = f.set_status
            && !(200..=599).contains(&s)
        {
            return Err(loc.err(
                span.clone(),
                field("set_status"),
                format!("{s} is not 200-599"),
            ));
        }
        for (name, value) in &f.set_headers {
            if !valid_field_name(name) || !valid_field_value(value) {
                return Err(loc.err(
                    span.clone(),
                    field("set_headers"),
                    format!("`{name}: {value}` is not a valid header field"),
                ));
            }
        }
        for name in f.set_headers.keys().chain(&f.remove_headers) {
            if is_reserved(name) {
                return Err(loc.err(
                    span.clone(),
                    field("set_headers"),
                    format!("`{name}` is written by lb itself"),
                ));
            }
        }
        let body = match (&f.body, &f.body_file) {
            (Some(_), Some(_)) => {
                return Err(loc.err(
                    span.clone(),
                    field("body"),
                    "give body or body_file, not both",
                ));
            }
            (Some(b), None) => Some(b.clone().into_bytes()),
            (None, Some(file)) => {
                let path = base_dir.unwrap_or(std::path::Path::new(".")).join(file);
                Some(std::fs::read(&path).map_err(|e| {
                    loc.err(
                        span.clone(),
                        field("body_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?)
            }
            (None, None) => None,
        };
        if let Some(ct) = &f.content_type
            && (body.is_none() || !valid_field_value(ct))
        {
            return Err(loc.err(
                span.clone(),
                field("content_type"),
                "content_type goes with body or body_file, and must be a valid field value",
            ));
        }
        if f.set_status.is_none()
            && f.set_headers.is_empty()
            && f.remove_headers.is_empty()
            && body.is_none()
        {
            return Err(loc.err(
                span.clone(),
                field("name"),
                "the rule does nothing: give it set_status, set_headers, remove_headers, body or body_file",
            ));
        }
        rules.push(ResponseRule {
            name: f.name.clone(),
            conditions,
            set_status: f.set_status,
            set_headers: f
                .set_headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            remove_headers: f
                .remove_headers
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            content_type: f
                .content_type
                .clone()
                .or_else(|| body.is_some().then(|| "text/plain".to_owned())),
            body,
        });
    }
    Ok(ResponseRuleSet { rules })
}

pub(super) fn export_response(
    set: &ResponseRuleSet,
    origin_ids: &[String],
) -> Vec<Spanned<ResponseRuleFile>> {
    set.rules
        .iter()
        .map(|r| {
            let when = r
                .conditions
                .iter()
                .map(|c| {
                    let mut f = ResponseConditionFile {
                        not: c.negate,
                        ..ResponseConditionFile::default()
                    };
                    match &c.test {
                        ResponseTest::Status(l) => f.status = Some(l.clone()),
                        ResponseTest::StatusRange(lo, hi) => f.status_range = Some([*lo, *hi]),
                        ResponseTest::Origin(l) => {
                            f.origin = Some(
                                l.iter()
                                    .filter_map(|o| origin_ids.get(*o).cloned())
                                    .collect(),
                            )
                        }
                        ResponseTest::Path(PathTest::Glob(p)) => {
                            f.path = Some(p.as_str().to_owned())
                        }
                        ResponseTest::Path(PathTest::Exact(p)) => f.path_exact = Some(p.clone()),
                        ResponseTest::Path(PathTest::Prefix(p)) => f.path_prefix = Some(p.clone()),
                        ResponseTest::Path(PathTest::Regex(TextTest::Regex(re))) => {
                            f.path_regex = Some(re.as_str().to_owned())
                        }
                        ResponseTest::Path(PathTest::Regex(_)) => {}
                        ResponseTest::Header { name, test } => {
                            f.header = Some(name.clone());
                            match test {
                                TextTest::Equals(s) => f.equals = Some(s.clone()),
                                TextTest::Prefix(s) => f.prefix = Some(s.clone()),
                                TextTest::Suffix(s) => f.suffix = Some(s.clone()),
                                TextTest::Contains(s) => f.contains = Some(s.clone()),
                                TextTest::Regex(re) => f.regex = Some(re.as_str().to_owned()),
                                TextTest::Present => f.present = true,
                                TextTest::Absent => f.absent = true,
                            }
                        }
                    }
                    Spanned::new(0..0, f)
                })
                .collect();
            Spanned::new(
                0..0,
                ResponseRuleFile {
                    name: r.name.clone(),
                    when,
                    set_status: r.set_status,
                    set_headers: r.set_headers.iter().cloned().collect(),
                    remove_headers: r.remove_headers.clone(),
                    body: r
                        .body
                        .as_ref()
                        .map(|b| String::from_utf8_lossy(b).into_owned()),
                    body_file: None,
                    content_type: r.body.as_ref().and(r.content_type.clone()),
                },
            )
        })
        .collect()
}
