//! CloudFront `DistributionConfig` JSON → [`Config`].
//!
//! Accepts the bare object or the `{"DistributionConfig": ..., "ETag": ...}` shape that
//! `aws cloudfront get-distribution-config` prints. Fields lb maps: Origins (Id,
//! DomainName, OriginPath, CustomHeaders, ConnectionAttempts, ConnectionTimeout,
//! CustomOriginConfig ports, protocol policy, read and keep-alive timeouts), OriginGroups
//! (Id, FailoverCriteria.StatusCodes, Members), DefaultCacheBehavior and CacheBehaviors
//! (PathPattern, TargetOriginId, AllowedMethods with CachedMethods, ViewerProtocolPolicy,
//! MinTTL/DefaultTTL/MaxTTL, ForwardedValues, and the managed CachingOptimized and
//! CachingDisabled cache policies) and CustomErrorResponses. Every other field is named in one warning; none is silently
//! ignored. Absent fields take CloudFront's defaults (3 attempts, 10 s connect, 30 s read,
//! 5 s keep-alive).

use std::{path::Path, time::Duration};

use serde_json::{Map, Value};

use super::{ConfigError, PathPattern, model::*, native};
use crate::functions::{FunctionKind, FunctionSpec, Trigger};

/// Known keys per object kind; anything else is reported as not implemented.
const DISTRIBUTION_KEYS: &[&str] = &[
    "Origins",
    "OriginGroups",
    "DefaultCacheBehavior",
    "CacheBehaviors",
    "CustomErrorResponses",
];
const ORIGIN_KEYS: &[&str] = &[
    "Id",
    "DomainName",
    "OriginPath",
    "CustomHeaders",
    "ConnectionAttempts",
    "ConnectionTimeout",
    "CustomOriginConfig",
    "S3OriginConfig",
];
const CUSTOM_ORIGIN_KEYS: &[&str] = &[
    "HTTPPort",
    "HTTPSPort",
    "OriginProtocolPolicy",
    "OriginReadTimeout",
    "OriginKeepaliveTimeout",
];
const GROUP_KEYS: &[&str] = &["Id", "FailoverCriteria", "Members"];
const BEHAVIOR_KEYS: &[&str] = &[
    "PathPattern",
    "TargetOriginId",
    "AllowedMethods",
    "ViewerProtocolPolicy",
    "ForwardedValues",
    "MinTTL",
    "DefaultTTL",
    "MaxTTL",
    "CachePolicyId",
    "LambdaFunctionAssociations",
    "FunctionAssociations",
];
const FORWARDED_VALUES_KEYS: &[&str] =
    &["QueryString", "Cookies", "Headers", "QueryStringCacheKeys"];

/// AWS's managed cache policies lb knows by id (their settings are published, not part
/// of the DistributionConfig). `None`: caching disabled.
const MANAGED_CACHE_POLICIES: &[(&str, Option<[u64; 3]>)] = &[
    // CachingOptimized: MinTTL 1 s, DefaultTTL 1 day, MaxTTL 1 year, nothing keyed.
    (
        "658327ea-f89d-4fab-a63d-7e88639e58f6",
        Some([1, 86_400, 31_536_000]),
    ),
    // CachingDisabled.
    ("4135ea2d-6df8-44a3-9df3-4b5a84be39ad", None),
];
const ERROR_RESPONSE_KEYS: &[&str] = &["ErrorCode", "ResponsePagePath", "ResponseCode"];

/// Where the listener and admin API go: JSON configs carry neither.
pub struct JsonDefaults {
    pub listen: std::net::SocketAddr,
    /// ARN → JavaScript file, for the behaviors' function associations (`--function`).
    pub functions: Vec<(String, std::path::PathBuf)>,
}

pub(super) fn parse(
    text: &str,
    file: &Path,
    defaults: &JsonDefaults,
) -> Result<(Config, Vec<String>), ConfigError> {
    let loc = native::Locator { file, text };
    let doc: Value = serde_json::from_str(text).map_err(|e| ConfigError::Invalid {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        field: String::new(),
        message: {
            // serde_json appends " at line L column C"; the prefix already says where.
            let text = e.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text).to_owned();
            format!("invalid JSON: {text}")
        },
    })?;
    let mut cx = Cx {
        loc: &loc,
        text,
        unimplemented: Vec::new(),
        notes: Vec::new(),
        function_files: &defaults.functions,
    };
    let dist = match doc.get("DistributionConfig") {
        Some(inner) => {
            for key in doc.as_object().into_iter().flat_map(Map::keys) {
                if key != "DistributionConfig" && key != "ETag" {
                    cx.unimplemented.push(key.clone());
                }
            }
            inner
        }
        None => &doc,
    };
    let dist = cx.object(dist, "DistributionConfig")?;
    cx.unknown_keys(dist, DISTRIBUTION_KEYS, "");

    let mut origins = Vec::new();
    for (i, o) in cx.items(dist.get("Origins"), "Origins")?.iter().enumerate() {
        origins.push(cx.origin(o, i)?);
    }
    if origins.is_empty() {
        return Err(cx.err("Origins", "", "a distribution needs at least one origin"));
    }
    let mut groups = Vec::new();
    for (g, item) in cx
        .items(dist.get("OriginGroups"), "OriginGroups")?
        .iter()
        .enumerate()
    {
        groups.push(cx.group(item, g, &origins, &groups)?);
    }
    let default = dist
        .get("DefaultCacheBehavior")
        .ok_or_else(|| cx.err("DefaultCacheBehavior", "", "missing DefaultCacheBehavior"))?;
    let default_behavior =
        cx.behavior(default, "DefaultCacheBehavior", &origins, &groups, false)?;
    let mut behaviors = Vec::new();
    for (i, b) in cx
        .items(dist.get("CacheBehaviors"), "CacheBehaviors")?
        .iter()
        .enumerate()
    {
        behaviors.push(cx.behavior(
            b,
            &format!("CacheBehaviors.Items[{i}]"),
            &origins,
            &groups,
            true,
        )?);
    }
    let mut custom_errors = Vec::new();
    for (i, e) in cx
        .items(dist.get("CustomErrorResponses"), "CustomErrorResponses")?
        .iter()
        .enumerate()
    {
        custom_errors.push(cx.error_response(e, i)?);
    }
    let mut warnings = Vec::new();
    if !cx.unimplemented.is_empty() {
        warnings.push(format!(
            "{}: these DistributionConfig fields are not implemented by lb and have no effect: {}",
            file.display(),
            cx.unimplemented.join(", ")
        ));
    }
    warnings.extend(cx.notes);
    // Everything CloudFront has no field for keeps lb's own defaults (one source of them).
    let base = native::parse("", file)?;
    let config = Config {
        listener: Listener {
            address: defaults.listen,
            ..base.listener
        },
        origins,
        groups,
        behaviors,
        default_behavior,
        custom_errors,
        ..base
    };
    Ok((config, warnings))
}

struct Cx<'a> {
    loc: &'a native::Locator<'a>,
    text: &'a str,
    /// Dotted paths of fields lb does not implement.
    unimplemented: Vec<String>,
    /// Fields lb reads but can only partly honour in this build.
    notes: Vec<String>,
    /// ARN → file, from `--function`.
    function_files: &'a [(String, std::path::PathBuf)],
}

impl<'a> Cx<'a> {
    /// An error at the first place `needle` appears in the text (a key or a value).
    fn err(&self, needle: &str, field: &str, message: impl Into<String>) -> ConfigError {
        let quoted = format!("\"{needle}\"");
        let at = self
            .text
            .find(&quoted)
            .or_else(|| self.text.find(needle))
            .unwrap_or(0);
        self.loc.err(at..at, field, message)
    }

    /// An error at the value `value` of key `key` (first such pair in the text).
    fn err_at_value(
        &self,
        key: &str,
        value: &str,
        field: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let key_q = format!("\"{key}\"");
        let mut from = 0;
        while let Some(k) = self.text[from..].find(&key_q) {
            let after = from + k + key_q.len();
            let rest = self.text[after..].trim_start();
            if let Some(rest) = rest.strip_prefix(':') {
                let rest_trim = rest.trim_start();
                let value_at = self.text.len() - rest_trim.len();
                let v = rest_trim.trim_start_matches('"');
                if v.starts_with(value) {
                    return self.loc.err(value_at..value_at, field, message);
                }
            }
            from = after;
        }
        self.err(key, field, message)
    }

    fn object<'v>(&self, v: &'v Value, field: &str) -> Result<&'v Map<String, Value>, ConfigError> {
        v.as_object()
            .ok_or_else(|| self.err(field, field, "must be a JSON object"))
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, known: &[&str], prefix: &str) {
        for key in obj.keys() {
            if !known.contains(&key.as_str()) {
                self.unimplemented.push(format!("{prefix}{key}"));
            }
        }
    }

    /// `{"Quantity": n, "Items": [...]}` → the items (absent: none). A wrong Quantity is
    /// reported, as CloudFront would refuse it, but the items are used.
    fn items<'v>(&mut self, v: Option<&'v Value>, field: &str) -> Result<&'v [Value], ConfigError> {
        let Some(v) = v else { return Ok(&[]) };
        let obj = self.object(v, field)?;
        let items = match obj.get("Items") {
            Some(Value::Array(a)) => a.as_slice(),
            None | Some(Value::Null) => &[],
            Some(_) => return Err(self.err(field, &format!("{field}.Items"), "must be an array")),
        };
        if let Some(q) = obj.get("Quantity").and_then(Value::as_u64)
            && q as usize != items.len()
        {
            self.notes.push(format!(
                "{field}.Quantity is {q} but Items has {} entries; lb uses the Items (CloudFront would refuse this)",
                items.len()
            ));
        }
        Ok(items)
    }

    fn str_field<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        field: &str,
    ) -> Result<Option<&'v str>, ConfigError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.err(key, &format!("{field}.{key}"), "must be a string")),
        }
    }

    fn num_field(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        field: &str,
    ) -> Result<Option<u64>, ConfigError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
                self.err(
                    key,
                    &format!("{field}.{key}"),
                    "must be a non-negative integer",
                )
            }),
            // CloudFront itself writes some numbers as strings (ResponseCode).
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
                self.err(
                    key,
                    &format!("{field}.{key}"),
                    format!("`{s}` is not a number"),
                )
            }),
            Some(_) => Err(self.err(key, &format!("{field}.{key}"), "must be a number")),
        }
    }

    fn origin(&mut self, v: &Value, i: usize) -> Result<Origin, ConfigError> {
        let field = format!("Origins.Items[{i}]");
        let obj = self.object(v, &field)?;
        self.unknown_keys(obj, ORIGIN_KEYS, &format!("{field}."));
        let id = self
            .str_field(obj, "Id", &field)?
            .ok_or_else(|| self.err("Origins", &format!("{field}.Id"), "missing Id"))?;
        let domain = self
            .str_field(obj, "DomainName", &field)?
            .ok_or_else(|| self.err(id, &format!("{field}.DomainName"), "missing DomainName"))?;
        let custom = match obj.get("CustomOriginConfig") {
            Some(c) => Some(self.object(c, &format!("{field}.CustomOriginConfig"))?),
            None => None,
        };
        if let Some(c) = custom {
            self.unknown_keys(
                c,
                CUSTOM_ORIGIN_KEYS,
                &format!("{field}.CustomOriginConfig."),
            );
        }
        let cfield = format!("{field}.CustomOriginConfig");
        // An S3 bucket (REST endpoint): CloudFront reaches it over HTTPS with the bucket's
        // domain as Host and SNI. Origin access identities and controls sign requests
        // with AWS credentials, which lb has no way to do: they are listed as not
        // implemented (a private bucket then answers 403).
        let s3 = match obj.get("S3OriginConfig") {
            Some(c) if custom.is_none() => {
                let s3field = format!("{field}.S3OriginConfig");
                let c = self.object(c, &s3field)?;
                self.unknown_keys(
                    c,
                    &["OriginAccessIdentity", "OriginReadTimeout"],
                    &format!("{s3field}."),
                );
                if c.get("OriginAccessIdentity")
                    .and_then(Value::as_str)
                    .is_some_and(|oai| !oai.is_empty())
                {
                    self.unimplemented
                        .push(format!("{s3field}.OriginAccessIdentity (request signing)"));
                }
                Some(c)
            }
            _ => None,
        };
        let policy = match custom
            .map(|c| self.str_field(c, "OriginProtocolPolicy", &cfield))
            .transpose()?
            .flatten()
        {
            None if s3.is_some() => OriginProtocol::HttpsOnly,
            None | Some("http-only") => OriginProtocol::HttpOnly,
            Some("https-only") => OriginProtocol::HttpsOnly,
            Some("match-viewer") => OriginProtocol::MatchViewer,
            Some(other) => {
                return Err(self.err_at_value(
                    "OriginProtocolPolicy",
                    other,
                    &format!("{cfield}.OriginProtocolPolicy"),
                    format!("`{other}` is not http-only, https-only or match-viewer"),
                ));
            }
        };
        let http_port = custom
            .map(|c| self.num_field(c, "HTTPPort", &cfield))
            .transpose()?
            .flatten()
            .unwrap_or(80);
        if http_port == 0 || http_port > 65535 {
            return Err(self.err(
                "HTTPPort",
                &format!("{cfield}.HTTPPort"),
                format!("bad port {http_port}"),
            ));
        }
        let https_port = custom
            .map(|c| self.num_field(c, "HTTPSPort", &cfield))
            .transpose()?
            .flatten()
            .unwrap_or(443);
        if https_port == 0 || https_port > 65535 {
            return Err(self.err(
                "HTTPSPort",
                &format!("{cfield}.HTTPSPort"),
                format!("bad port {https_port}"),
            ));
        }
        let tls_server_name = domain.trim_matches(['[', ']']).to_owned();
        if let Some(placeholder) = template_placeholder(domain) {
            return Err(self.err_at_value(
                "DomainName",
                domain,
                &format!("{field}.DomainName"),
                format!("`{placeholder}` in `{domain}` is an unexpanded template placeholder, not part of a DNS name"),
            ));
        }
        native::validate_server_name(&tls_server_name).map_err(|why| {
            self.err_at_value("DomainName", domain, &format!("{field}.DomainName"), why)
        })?;
        let address = if domain.contains(':') && !domain.starts_with('[') {
            format!("[{domain}]:{http_port}")
        } else {
            format!("{domain}:{http_port}")
        };
        let (address, host) = native::parse_origin_address(&address).map_err(|why| {
            self.err_at_value("DomainName", domain, &format!("{field}.DomainName"), why)
        })?;
        let attempts = self
            .num_field(obj, "ConnectionAttempts", &field)?
            .unwrap_or(3);
        if !(1..=3).contains(&attempts) {
            return Err(self.err(
                "ConnectionAttempts",
                &format!("{field}.ConnectionAttempts"),
                format!("must be 1, 2 or 3 (got {attempts})"),
            ));
        }
        let connect = self
            .num_field(obj, "ConnectionTimeout", &field)?
            .unwrap_or(10);
        if !(1..=10).contains(&connect) {
            return Err(self.err(
                "ConnectionTimeout",
                &format!("{field}.ConnectionTimeout"),
                format!("must be 1-10 seconds (got {connect})"),
            ));
        }
        let read = custom
            .or(s3)
            .map(|c| self.num_field(c, "OriginReadTimeout", &cfield))
            .transpose()?
            .flatten()
            .unwrap_or(30);
        let keepalive = custom
            .map(|c| self.num_field(c, "OriginKeepaliveTimeout", &cfield))
            .transpose()?
            .flatten()
            .unwrap_or(5);
        let origin_path = self
            .str_field(obj, "OriginPath", &field)?
            .unwrap_or("")
            .to_owned();
        if let Some(placeholder) = template_placeholder(&origin_path) {
            return Err(self.err_at_value(
                "OriginPath",
                &origin_path,
                &format!("{field}.OriginPath"),
                format!(
                    "`{placeholder}` is an unexpanded template placeholder (a multi-tenant \
                     parameter or a deployment variable): lb serves one distribution, so \
                     expand it first"
                ),
            ));
        }
        let mut custom_headers = Vec::new();
        for (h, item) in self
            .items(obj.get("CustomHeaders"), &format!("{field}.CustomHeaders"))?
            .iter()
            .enumerate()
        {
            let hfield = format!("{field}.CustomHeaders.Items[{h}]");
            let hobj = self.object(item, &hfield)?;
            let name = self
                .str_field(hobj, "HeaderName", &hfield)?
                .ok_or_else(|| self.err("CustomHeaders", &hfield, "missing HeaderName"))?;
            let value = self.str_field(hobj, "HeaderValue", &hfield)?.unwrap_or("");
            native::validate_custom_header(name, value)
                .map_err(|why| self.err_at_value("HeaderName", name, &hfield, why))?;
            custom_headers.push((name.to_owned(), value.to_owned()));
        }
        Ok(Origin {
            id: id.to_owned(),
            address,
            host_header: s3.is_some().then(|| tls_server_name.clone()),
            host,
            origin_path,
            custom_headers,
            protocol: policy,
            // CloudFront speaks HTTP/1.1 to custom origins.
            http_version: OriginHttpVersion::H1,
            https_port: https_port as u16,
            tls_server_name,
            connect_timeout: Duration::from_secs(connect),
            connection_attempts: attempts as u8,
            response_timeout: Duration::from_secs(read),
            keepalive_timeout: Duration::from_secs(keepalive),
            health_check: None,
        })
    }

    fn group(
        &mut self,
        v: &Value,
        g: usize,
        origins: &[Origin],
        groups: &[OriginGroup],
    ) -> Result<OriginGroup, ConfigError> {
        let field = format!("OriginGroups.Items[{g}]");
        let obj = self.object(v, &field)?;
        self.unknown_keys(obj, GROUP_KEYS, &format!("{field}."));
        let id = self
            .str_field(obj, "Id", &field)?
            .ok_or_else(|| self.err("OriginGroups", &format!("{field}.Id"), "missing Id"))?;
        if origins.iter().any(|o| o.id == id) || groups.iter().any(|gr| gr.id == id) {
            return Err(self.err_at_value(
                "Id",
                id,
                &format!("{field}.Id"),
                format!("duplicate id `{id}`"),
            ));
        }
        let criteria = obj
            .get("FailoverCriteria")
            .and_then(|c| c.get("StatusCodes"));
        let mut codes = Vec::new();
        for c in self.items(criteria, &format!("{field}.FailoverCriteria.StatusCodes"))? {
            let code = c.as_u64().unwrap_or(0);
            if !(400..=599).contains(&code) {
                return Err(self.err(
                    "StatusCodes",
                    &format!("{field}.FailoverCriteria.StatusCodes"),
                    format!("bad status code {c}: failover statuses are 4xx or 5xx"),
                ));
            }
            codes.push(code as u16);
        }
        let mut members = Vec::new();
        for (m, item) in self
            .items(obj.get("Members"), &format!("{field}.Members"))?
            .iter()
            .enumerate()
        {
            let mfield = format!("{field}.Members.Items[{m}].OriginId");
            let origin_id = item
                .get("OriginId")
                .and_then(Value::as_str)
                .ok_or_else(|| self.err("Members", &mfield, "missing OriginId"))?;
            let index = origins
                .iter()
                .position(|o| o.id == origin_id)
                .ok_or_else(|| {
                    self.err_at_value(
                        "OriginId",
                        origin_id,
                        &mfield,
                        format!("unknown origin id `{origin_id}`"),
                    )
                })?;
            members.push(index);
        }
        if members.len() < 2 {
            return Err(self.err_at_value(
                "Id",
                id,
                &format!("{field}.Members"),
                "a group needs at least two members",
            ));
        }
        Ok(OriginGroup {
            id: id.to_owned(),
            weights: vec![1; members.len()],
            members,
            failover_statuses: StatusSet::from_codes(codes),
            // gRPC's UNAVAILABLE (CloudFront has no setting for it).
            failover_grpc_statuses: vec![14],
            mode: GroupMode::Failover,
            always_try_primary: false,
            fail_open: true,
        })
    }

    fn behavior(
        &mut self,
        v: &Value,
        field: &str,
        origins: &[Origin],
        groups: &[OriginGroup],
        needs_pattern: bool,
    ) -> Result<Behavior, ConfigError> {
        let obj = self.object(v, field)?;
        self.unknown_keys(obj, BEHAVIOR_KEYS, &format!("{field}."));
        let target_id = self
            .str_field(obj, "TargetOriginId", field)?
            .ok_or_else(|| {
                self.err(
                    field.split('.').next().unwrap_or(field),
                    &format!("{field}.TargetOriginId"),
                    "missing TargetOriginId",
                )
            })?;
        let target = if let Some(g) = groups.iter().position(|g| g.id == target_id) {
            Target::Group(g)
        } else if let Some(o) = origins.iter().position(|o| o.id == target_id) {
            Target::Origin(o)
        } else {
            return Err(self.err_at_value(
                "TargetOriginId",
                target_id,
                &format!("{field}.TargetOriginId"),
                format!("unknown origin or group id `{target_id}`"),
            ));
        };
        let path_pattern = match (needs_pattern, self.str_field(obj, "PathPattern", field)?) {
            (true, Some(p)) => Some(PathPattern::new(p)),
            (true, None) => {
                return Err(self.err_at_value(
                    "TargetOriginId",
                    target_id,
                    &format!("{field}.PathPattern"),
                    "missing PathPattern",
                ));
            }
            (false, _) => None,
        };
        let mut cached_methods = vec!["GET".to_owned(), "HEAD".to_owned()];
        let allowed_methods = match obj.get("AllowedMethods") {
            None => MethodSet::from_names(["GET", "HEAD"]).expect("known methods"),
            Some(am) => {
                if let Some(cached) = am.get("CachedMethods") {
                    cached_methods = self
                        .items(
                            Some(cached),
                            &format!("{field}.AllowedMethods.CachedMethods"),
                        )?
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                }
                let names: Vec<&str> = self
                    .items(Some(am), &format!("{field}.AllowedMethods"))?
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                MethodSet::from_names(names).map_err(|why| {
                    self.err("AllowedMethods", &format!("{field}.AllowedMethods"), why)
                })?
            }
        };
        let viewer_protocol_policy = match self.str_field(obj, "ViewerProtocolPolicy", field)? {
            None | Some("allow-all") => ViewerProtocolPolicy::AllowAll,
            Some("redirect-to-https") => ViewerProtocolPolicy::RedirectToHttps,
            Some("https-only") => ViewerProtocolPolicy::HttpsOnly,
            Some(other) => {
                return Err(self.err_at_value(
                    "ViewerProtocolPolicy",
                    other,
                    &format!("{field}.ViewerProtocolPolicy"),
                    format!("`{other}` is not allow-all, redirect-to-https or https-only"),
                ));
            }
        };
        let cache = self.behavior_cache(obj, field, cached_methods)?;
        let functions = self.behavior_functions(obj, field)?;
        Ok(Behavior {
            path_pattern,
            target,
            allowed_methods,
            viewer_protocol_policy,
            cache,
            functions,
            rules: Default::default(),
        })
    }

    /// `LambdaFunctionAssociations` and `FunctionAssociations`: each ARN runs the file
    /// `--function ARN=FILE` maps it to (the ARN with or without its version). An ARN
    /// without a mapping, or at a trigger lb does not run yet, is a note, not an error:
    /// the rest of the distribution still works.
    fn behavior_functions(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
    ) -> Result<Vec<FunctionSpec>, ConfigError> {
        let mut out: Vec<FunctionSpec> = Vec::new();
        for (key, arn_key, kind) in [
            (
                "LambdaFunctionAssociations",
                "LambdaFunctionARN",
                FunctionKind::LambdaEdge,
            ),
            (
                "FunctionAssociations",
                "FunctionARN",
                FunctionKind::CloudFrontFunction,
            ),
        ] {
            let at = format!("{field}.{key}");
            for (i, item) in self.items(obj.get(key), &at)?.iter().enumerate() {
                let item_field = format!("{at}.Items[{i}]");
                let item = self.object(item, &item_field)?;
                let arn = self.str_field(item, arn_key, &item_field)?.unwrap_or("");
                if let Some(placeholder) = template_placeholder(arn) {
                    return Err(self.err_at_value(
                        arn_key,
                        arn,
                        &format!("{item_field}.{arn_key}"),
                        format!(
                            "`{placeholder}` is an unexpanded template placeholder, not an ARN"
                        ),
                    ));
                }
                let event = self
                    .str_field(item, "EventType", &item_field)?
                    .unwrap_or("");
                let trigger = match (event, kind) {
                    ("viewer-request", _) => Trigger::ViewerRequest,
                    ("origin-request", FunctionKind::LambdaEdge) => Trigger::OriginRequest,
                    ("origin-response", FunctionKind::LambdaEdge) => Trigger::OriginResponse,
                    ("viewer-response", _) => Trigger::ViewerResponse,
                    _ => {
                        self.notes.push(format!(
                            "{item_field}: {event} functions are not run by lb yet; {arn} is ignored"
                        ));
                        continue;
                    }
                };
                let unversioned = arn.rsplit_once(':').map_or(arn, |(base, version)| {
                    if version.bytes().all(|b| b.is_ascii_digit()) && !version.is_empty() {
                        base
                    } else {
                        arn
                    }
                });
                let Some((_, file)) = self
                    .function_files
                    .iter()
                    .find(|(a, _)| a == arn || a == unversioned)
                else {
                    self.notes.push(format!(
                        "{item_field}: no --function mapping for {arn}; its {event} function is not run"
                    ));
                    continue;
                };
                let source = std::fs::read_to_string(file).map_err(|e| {
                    self.err_at_value(
                        arn_key,
                        arn,
                        &format!("{item_field}.{arn_key}"),
                        format!("--function {arn}={}: {e}", file.display()),
                    )
                })?;
                crate::functions::engine::check(&source, kind).map_err(|e| {
                    self.err_at_value(
                        arn_key,
                        arn,
                        &format!("{item_field}.{arn_key}"),
                        format!("{}: {e}", file.display()),
                    )
                })?;
                if out.iter().any(|f| f.trigger == trigger) {
                    return Err(self.err_at_value(
                        arn_key,
                        arn,
                        &format!("{item_field}.EventType"),
                        format!("a second {event} function: one per trigger"),
                    ));
                }
                out.push(FunctionSpec {
                    name: unversioned.rsplit(':').next().unwrap_or(arn).to_owned(),
                    path: file.clone(),
                    source,
                    trigger,
                    kind,
                });
            }
        }
        Ok(out)
    }

    /// How a behavior caches: its legacy `ForwardedValues` and TTLs, or a managed cache
    /// policy lb knows. `None` when CloudFront would not cache (MaxTTL 0, CachingDisabled,
    /// every header forwarded) or when the settings live outside the DistributionConfig
    /// (a custom cache policy; said in a note).
    fn behavior_cache(
        &mut self,
        obj: &Map<String, Value>,
        field: &str,
        cached_methods: Vec<String>,
    ) -> Result<Option<BehaviorCache>, ConfigError> {
        let mut c = super::file::BehaviorCacheFile {
            methods: toml::Spanned::new(0..0, cached_methods),
            ..Default::default()
        };
        if let Some(id) = self.str_field(obj, "CachePolicyId", field)? {
            let Some((_, ttls)) = MANAGED_CACHE_POLICIES.iter().find(|(i, _)| *i == id) else {
                self.notes.push(format!(
                    "{field}.CachePolicyId `{id}` is a cache policy defined outside the DistributionConfig: \
                     lb does not cache this behavior (give it ForwardedValues and TTLs, or a [behaviors.cache] table in TOML)"
                ));
                return Ok(None);
            };
            let Some([min, default, max]) = ttls else {
                return Ok(None);
            };
            c.min_ttl = Duration::from_secs(*min);
            c.default_ttl = Duration::from_secs(*default);
            c.max_ttl = Duration::from_secs(*max);
        } else if let Some(fv) = obj.get("ForwardedValues") {
            let ffield = format!("{field}.ForwardedValues");
            let fv = self.object(fv, &ffield)?;
            self.unknown_keys(fv, FORWARDED_VALUES_KEYS, &format!("{ffield}."));
            let ttl = |cx: &Self, key: &str, default: u64| -> Result<Duration, ConfigError> {
                Ok(Duration::from_secs(
                    cx.num_field(obj, key, field)?.unwrap_or(default),
                ))
            };
            c.min_ttl = ttl(self, "MinTTL", 0)?;
            c.default_ttl = ttl(self, "DefaultTTL", 86_400)?;
            c.max_ttl = ttl(self, "MaxTTL", 31_536_000)?;
            c.query = match fv.get("QueryString") {
                Some(Value::Bool(true)) => {
                    let keys: Vec<String> = self
                        .items(
                            fv.get("QueryStringCacheKeys"),
                            &format!("{ffield}.QueryStringCacheKeys"),
                        )?
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                    if keys.is_empty() {
                        crate::cache::QueryKey::All
                    } else {
                        crate::cache::QueryKey::Only(keys)
                    }
                }
                None | Some(Value::Bool(false)) => crate::cache::QueryKey::None,
                Some(_) => {
                    return Err(self.err(
                        "QueryString",
                        &format!("{ffield}.QueryString"),
                        "must be true or false",
                    ));
                }
            };
            if let Some(cookies) = fv.get("Cookies") {
                let cfield = format!("{ffield}.Cookies");
                let cookies = self.object(cookies, &cfield)?;
                c.cookies = match self.str_field(cookies, "Forward", &cfield)? {
                    None | Some("none") => crate::cache::CookieKey::None,
                    Some("all") => crate::cache::CookieKey::All,
                    Some("whitelist") => crate::cache::CookieKey::Only(
                        self.items(
                            cookies.get("WhitelistedNames"),
                            &format!("{cfield}.WhitelistedNames"),
                        )?
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect(),
                    ),
                    Some(other) => {
                        return Err(self.err_at_value(
                            "Forward",
                            other,
                            &format!("{cfield}.Forward"),
                            format!("`{other}` is not none, whitelist or all"),
                        ));
                    }
                };
            }
            for h in self
                .items(fv.get("Headers"), &format!("{ffield}.Headers"))?
                .iter()
                .filter_map(Value::as_str)
            {
                if h == "*" {
                    // CloudFront does not cache a behavior that forwards every header.
                    return Ok(None);
                }
                // The host is always in lb's key and always reaches the origin.
                if !h.eq_ignore_ascii_case("host") {
                    c.headers.push(h.to_owned());
                }
            }
        } else {
            self.notes.push(format!(
                "{field} has neither ForwardedValues nor CachePolicyId (CloudFront requires one): lb does not cache it"
            ));
            return Ok(None);
        }
        if c.max_ttl.is_zero() {
            return Ok(None);
        }
        // CloudFront serves an expired copy instead of an origin error for as long as it
        // holds one; lb bounds that by the behavior's MaxTTL.
        c.stale_if_error = c.max_ttl;
        native::behavior_cache(&c).map(Some).map_err(|(sub, why)| {
            let (key, json) = match sub {
                ".default_ttl" => ("DefaultTTL", "DefaultTTL"),
                ".methods" => ("CachedMethods", "AllowedMethods.CachedMethods"),
                ".headers" => ("Headers", "ForwardedValues.Headers"),
                _ => ("ForwardedValues", "ForwardedValues"),
            };
            self.err(key, &format!("{field}.{json}"), why)
        })
    }

    fn error_response(&mut self, v: &Value, i: usize) -> Result<CustomErrorResponse, ConfigError> {
        let field = format!("CustomErrorResponses.Items[{i}]");
        let obj = self.object(v, &field)?;
        self.unknown_keys(obj, ERROR_RESPONSE_KEYS, &format!("{field}."));
        let code = self.num_field(obj, "ErrorCode", &field)?.ok_or_else(|| {
            self.err(
                "CustomErrorResponses",
                &format!("{field}.ErrorCode"),
                "missing ErrorCode",
            )
        })?;
        if !(400..=599).contains(&code) {
            return Err(self.err(
                "ErrorCode",
                &format!("{field}.ErrorCode"),
                format!("bad status code {code}"),
            ));
        }
        let response_code = self
            .num_field(obj, "ResponseCode", &field)?
            .map(|c| c as u16);
        let page = match self.str_field(obj, "ResponsePagePath", &field)? {
            Some(p) if p.starts_with('/') => ErrorPage::Path(p.to_owned()),
            Some(p) => {
                return Err(self.err_at_value(
                    "ResponsePagePath",
                    p,
                    &format!("{field}.ResponsePagePath"),
                    "must start with /",
                ));
            }
            None => {
                return Err(self.err("ErrorCode", &format!("{field}.ResponsePagePath"),
                    "missing ResponsePagePath (lb serves custom pages; error caching alone is not implemented)"));
            }
        };
        Ok(CustomErrorResponse {
            error_code: code as u16,
            response_code,
            page,
        })
    }
}

/// The first unexpanded template placeholder in `s`, if any: `{{name}}`, `${NAME}`,
/// `{some text}` or `<some-text>`, which deployment tools fill in and CloudFront never
/// sees.
fn template_placeholder(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let open = (0..bytes.len()).find(|&i| match bytes[i] {
        b'{' | b'<' => true,
        // `$VAR` and `${VAR}`; a lone `$` is a legal path byte.
        b'$' => bytes
            .get(i + 1)
            .is_some_and(|&n| n == b'{' || n == b'_' || n.is_ascii_uppercase()),
        _ => false,
    })?;
    let rest = &s[open..];
    let Some(close) = rest.find(['}', '>']) else {
        // `$VAR` runs to the first byte that cannot be in a variable name.
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(rest.len(), |e| e + 1);
        return Some(&rest[..end]);
    };
    let end = close + 1 + rest[close + 1..].bytes().take_while(|&b| b == b'}').count();
    Some(&rest[..end])
}

#[cfg(test)]
mod placeholder_tests {
    use super::template_placeholder;

    #[test]
    fn placeholders_are_found_and_plain_values_are_not() {
        assert_eq!(
            template_placeholder("/{{tenantName}}"),
            Some("{{tenantName}}")
        );
        assert_eq!(template_placeholder("${BUCKET}.s3"), Some("${BUCKET}"));
        assert_eq!(
            template_placeholder("arn:aws:lambda:us-east-1:{your ARN here}"),
            Some("{your ARN here}")
        );
        assert_eq!(
            template_placeholder("<wp-alb-domain>"),
            Some("<wp-alb-domain>")
        );
        assert_eq!(template_placeholder("/static/v1"), None);
        assert_eq!(
            template_placeholder("arn:aws:lambda:us-east-1:123456789012:function:f:3"),
            None
        );
    }
}
