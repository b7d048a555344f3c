//! `lb check` on broken configs: each error names the file, line, column and field.

use lb_tests::process::{TestDir, lb};

fn check(dir: &TestDir, name: &str, contents: &str) -> (i32, String) {
    let path = dir.write(name, contents);
    let out = lb(&["check", "--config", path.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        err.replace(&format!("{}/", dir.path.display()), ""),
    )
}

const ORIGINS: &str = "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[origins]]\nid = \"b\"\naddress = \"127.0.0.1:2\"\n";

#[test]
fn broken_toml_configs_get_file_line_column_field_messages() {
    let dir = TestDir::new();
    let cases: &[(&str, String, &str)] = &[
        ("syntax.toml", "[listener\naddress = 1\n".into(), "error: syntax.toml:1:10: "),
        ("unknown-field.toml", format!("{ORIGINS}[default_behavior]\ntarget = \"a\"\nretries = 3\n"), "error: unknown-field.toml:9:1: unknown field `retries`"),
        ("dup.toml", "[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:1\"\n[[origins]]\nid = \"a\"\naddress = \"127.0.0.1:2\"\n[default_behavior]\ntarget = \"a\"\n".into(),
            "error: dup.toml:5:6: origins[1].id: duplicate id `a`"),
        ("unknown-member.toml", format!("{ORIGINS}[[origin_groups]]\nid = \"g\"\nmembers = [\"a\", \"c\"]\nfailover_status_codes = [503]\n[default_behavior]\ntarget = \"g\"\n"),
            "error: unknown-member.toml:9:17: origin_groups[0].members: unknown origin id `c`"),
        ("bad-status.toml", format!("{ORIGINS}[[origin_groups]]\nid = \"g\"\nmembers = [\"a\", \"b\"]\nfailover_status_codes = [503, 200]\n[default_behavior]\ntarget = \"g\"\n"),
            "error: bad-status.toml:10:31: origin_groups[0].failover_status_codes: bad status code 200: failover statuses are 4xx or 5xx"),
        ("one-member.toml", format!("{ORIGINS}[[origin_groups]]\nid = \"g\"\nmembers = [\"a\"]\nfailover_status_codes = [503]\n[default_behavior]\ntarget = \"g\"\n"),
            "error: one-member.toml:9:11: origin_groups[0].members: a group needs at least two members"),
        ("unknown-target.toml", format!("{ORIGINS}[default_behavior]\ntarget = \"nope\"\n"),
            "error: unknown-target.toml:8:10: default_behavior.target: unknown origin or group id `nope`"),
        ("bad-duration.toml", format!("{ORIGINS}connect_timeout = \"fast\"\n[default_behavior]\ntarget = \"a\"\n"), "error: bad-duration.toml:7:19: "),
        ("bad-attempts.toml", format!("{ORIGINS}connection_attempts = 0\n[default_behavior]\ntarget = \"a\"\n"),
            "error: bad-attempts.toml:7:23: origins[1].connection_attempts: must be 1, 2 or 3 (got 0)"),
        ("bad-method.toml", format!("{ORIGINS}[default_behavior]\ntarget = \"a\"\nallowed_methods = [\"GET\", \"FETCH\"]\n"),
            "error: bad-method.toml:9:19: default_behavior.allowed_methods: unknown method `FETCH`"),
        ("missing-default.toml", ORIGINS.into(), "error: missing-default.toml:1:1: default_behavior: missing"),
        ("bad-header.toml", format!("{ORIGINS}[origins.custom_headers]\n\"X Bad\" = \"v\"\n[default_behavior]\ntarget = \"a\"\n"),
            "error: bad-header.toml:5:6: origins[1].custom_headers: `X Bad` is not a valid header name"),
        ("no-page.toml", format!("{ORIGINS}[default_behavior]\ntarget = \"a\"\n[[custom_error_responses]]\nerror_code = 503\nresponse_page_file = \"missing.html\"\n"),
            "error: no-page.toml:11:22: custom_error_responses[0].response_page_file: cannot read "),
    ];
    for (name, contents, want) in cases {
        let (code, err) = check(&dir, name, contents);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.starts_with(want), "{name}:\n got: {err}\nwant: {want}");
    }
}

#[test]
fn broken_cloudfront_json_gets_file_line_column_field_messages() {
    let dir = TestDir::new();
    let origin = |id: &str| {
        format!(
            r#"{{"Id": "{id}", "DomainName": "127.0.0.1", "CustomOriginConfig": {{"HTTPPort": 8081, "OriginProtocolPolicy": "http-only"}}}}"#
        )
    };
    let cases: &[(&str, String, &str)] = &[
        (
            "syntax.json",
            "{\n  \"Origins\": {\n}".into(),
            "error: syntax.json:3:1: invalid JSON: EOF while parsing an object\n",
        ),
        (
            "target.json",
            format!(
                "{{\n  \"Origins\": {{\"Quantity\": 1, \"Items\": [{}]}},\n  \"DefaultCacheBehavior\": {{\n    \"TargetOriginId\": \"ghost\"\n  }}\n}}",
                origin("a")
            ),
            "error: target.json:4:23: DefaultCacheBehavior.TargetOriginId: unknown origin or group id `ghost`",
        ),
        (
            "member.json",
            format!(
                "{{\n  \"Origins\": {{\"Quantity\": 2, \"Items\": [{}, {}]}},\n  \"OriginGroups\": {{\"Quantity\": 1, \"Items\": [{{\"Id\": \"g\",\n    \"FailoverCriteria\": {{\"StatusCodes\": {{\"Quantity\": 1, \"Items\": [503]}}}},\n    \"Members\": {{\"Quantity\": 2, \"Items\": [{{\"OriginId\": \"a\"}}, {{\"OriginId\": \"zz\"}}]}}}}]}},\n  \"DefaultCacheBehavior\": {{\"TargetOriginId\": \"g\"}}\n}}",
                origin("a"),
                origin("b")
            ),
            "error: member.json:5:74: OriginGroups.Items[0].Members.Items[1].OriginId: unknown origin id `zz`",
        ),
        (
            "attempts.json",
            format!(
                "{{\"Origins\": {{\"Quantity\": 1, \"Items\": [{}]}}, \"DefaultCacheBehavior\": {{\"TargetOriginId\": \"a\"}}}}",
                origin("a").replace(
                    "\"DomainName\"",
                    "\"ConnectionAttempts\": 5, \"DomainName\""
                )
            ),
            "error: attempts.json:1:",
        ),
    ];
    for (name, contents, want) in cases {
        let (code, err) = check(&dir, name, contents);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(err.starts_with(want), "{name}:\n got: {err}\nwant: {want}");
    }
    let (_, err) = check(
        &dir,
        "attempts.json",
        &format!(
            "{{\"Origins\": {{\"Quantity\": 1, \"Items\": [{}]}}, \"DefaultCacheBehavior\": {{\"TargetOriginId\": \"a\"}}}}",
            origin("a").replace(
                "\"DomainName\"",
                "\"ConnectionAttempts\": 5, \"DomainName\""
            )
        ),
    );
    assert!(
        err.contains("Origins.Items[0].ConnectionAttempts: must be 1, 2 or 3 (got 5)"),
        "{err}"
    );
}
