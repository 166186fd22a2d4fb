//! Tasks: each `[tasks.<id>]` table resolved into a [`Task`] of its kind, every value
//! checked.

use super::*;

/// Resolves one task; returns it with its `depends_on` entries (spans kept for the graph
/// checks), or `None` when its fields did not deserialize.
pub(super) fn resolve_task(
    cx: &mut Ctx<'_>,
    id: &str,
    key_span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    defaults: &TaskDefaults,
    ids: &BTreeSet<String>,
    options: &ParseOptions,
) -> Option<(Task, Vec<Spanned<String>>)> {
    let field = path_string(&["tasks".to_owned(), id.to_owned()]);
    if let Err(reason) = check_id(id, false) {
        let at = cx.at_field(Some(key_span.clone()), &field);
        cx.push(DagError::InvalidValue {
            at,
            message: format!("invalid task id {id:?}: {reason}"),
        });
    }
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        cx.invalid(span, format!("task {id:?} must be a table"));
        return None;
    };

    let kind_name = match table.get("type") {
        None => {
            let at = cx.at_field(Some(span.clone()), &join_path(&field, "type"));
            cx.push(DagError::MissingField {
                at,
                name: "type".into(),
                hint: Some(format!("one of: {}", TASK_KINDS.join(", "))),
            });
            None
        }
        Some(t) => match t.get_ref().as_str() {
            Some(k) if TASK_KINDS.contains(&k) => Some(k.to_owned()),
            Some(k) => {
                let at = cx.at(t.span());
                cx.push(DagError::UnknownTaskKind {
                    at,
                    name: k.to_owned(),
                    suggestion: suggest(k, TASK_KINDS.iter().copied()),
                });
                None
            }
            None => {
                cx.invalid(
                    t.span(),
                    format!("expected a string, found {}", t.get_ref().type_str()),
                );
                None
            }
        },
    };

    let (mut common, mut rest) = (DeTable::new(), DeTable::new());
    for (k, v) in table {
        match k.get_ref().as_ref() {
            "type" => {}
            name if COMMON_FIELDS.contains(&name) => {
                common.insert(k, v);
            }
            _ => {
                rest.insert(k, v);
            }
        }
    }
    let common: Option<RawCommon> = cx.de(
        Spanned::new(span.clone(), DeValue::Table(common)),
        COMMON_FIELDS,
    );
    let kind = kind_name.and_then(|k| resolve_kind(cx, &k, span.clone(), rest, options));
    let common = common?;

    let mut depends_on: Vec<Spanned<String>> = common
        .depends_on
        .map(Spanned::into_inner)
        .unwrap_or_default();
    let for_each = common
        .for_each
        .as_ref()
        .and_then(|f| resolve_for_each(cx, id, f, ids, &mut depends_on));

    let retry_delay = cx.duration(common.retry_delay.as_ref(), false);
    let max_retry_delay = cx.duration(common.max_retry_delay.as_ref(), true);
    let timeout = cx.duration(common.timeout.as_ref(), true);
    let pool = cx.name(common.pool.as_ref(), "pool");
    let queue = cx.name(common.queue.as_ref(), "queue");
    let pool_slots = match &common.pool_slots {
        None => 1,
        Some(n) if *n.get_ref() == 0 => {
            cx.invalid(n.span(), "pool_slots must be at least 1");
            1
        }
        Some(n) => *n.get_ref(),
    };
    let on_failure = common.on_failure.map(|c| callback(cx, c));
    let on_success = common.on_success.map(|c| callback(cx, c));
    let on_retry = common.on_retry.map(|c| callback(cx, c));
    let deadline = common
        .deadline
        .and_then(|d| super::deadline::deadline(cx, d));
    let kind = kind?;

    let default_timeout = match kind {
        TaskKind::Sensor(_) | TaskKind::Require(_) => Some(SENSOR_DEFAULT_TIMEOUT),
        _ => None,
    };
    let task = Task {
        id: id.to_owned(),
        kind,
        depends_on: depends_on.iter().map(|d| d.get_ref().clone()).collect(),
        trigger_rule: common.trigger_rule.unwrap_or_default(),
        for_each,
        retries: common.retries.unwrap_or(defaults.retries),
        retry_delay: retry_delay.unwrap_or(defaults.retry_delay),
        retry_exponential_backoff: common
            .retry_exponential_backoff
            .unwrap_or(defaults.retry_exponential_backoff),
        max_retry_delay: max_retry_delay.or(defaults.max_retry_delay),
        timeout: timeout.or(defaults.timeout).or(default_timeout),
        pool: pool.unwrap_or_else(|| defaults.pool.clone()),
        pool_slots,
        queue: queue.unwrap_or_else(|| defaults.queue.clone()),
        priority: common.priority.unwrap_or(defaults.priority),
        on_failure: on_failure.flatten().or_else(|| defaults.on_failure.clone()),
        on_success: on_success.flatten().or_else(|| defaults.on_success.clone()),
        on_retry: on_retry.flatten().or_else(|| defaults.on_retry.clone()),
        doc: common.doc,
        deadline,
    };
    Some((task, depends_on))
}

pub(super) fn resolve_for_each(
    cx: &mut Ctx<'_>,
    id: &str,
    v: &Spanned<toml::Value>,
    ids: &BTreeSet<String>,
    depends_on: &mut Vec<Spanned<String>>,
) -> Option<ForEach> {
    let bad = |cx: &mut Ctx<'_>, message: String| {
        let at = cx.at(v.span());
        cx.push(DagError::BadForEach { at, message });
        None
    };
    match v.get_ref() {
        toml::Value::Array(items) if items.is_empty() => bad(
            cx,
            "for_each is an empty list; give at least one item".into(),
        ),
        toml::Value::Array(items) => Some(ForEach::Items(items.iter().map(toml_to_json).collect())),
        toml::Value::Table(t) => {
            let from = t.get("from").and_then(toml::Value::as_str);
            match from {
                Some(from) if t.len() == 1 => {
                    if from == id {
                        return bad(cx, format!("for_each.from names the task itself ({id:?})"));
                    }
                    if !ids.contains(from) {
                        let suggestion = suggest(from, ids.iter().map(String::as_str))
                            .map(|s| format!(" (did you mean {s:?}?)"))
                            .unwrap_or_default();
                        return bad(
                            cx,
                            format!("for_each.from names unknown task {from:?}{suggestion}"),
                        );
                    }
                    if !depends_on.iter().any(|d| d.get_ref() == from) {
                        depends_on.push(Spanned::new(v.span(), from.to_owned()));
                    }
                    Some(ForEach::From(from.to_owned()))
                }
                _ => bad(
                    cx,
                    "for_each table must be exactly { from = \"<upstream task id>\" }".into(),
                ),
            }
        }
        other => bad(
            cx,
            format!(
                "for_each must be a list of items or {{ from = \"<upstream task id>\" }}, found {}",
                other.type_str()
            ),
        ),
    }
}

pub(super) fn resolve_kind(
    cx: &mut Ctx<'_>,
    kind: &str,
    span: Range<usize>,
    rest: DeTable<'_>,
    options: &ParseOptions,
) -> Option<TaskKind> {
    let known: Vec<&str> = COMMON_FIELDS.iter().chain(SENSOR_FIELDS).copied().collect();
    let value = Spanned::new(span.clone(), DeValue::Table(rest));
    match kind {
        "noop" => {
            if let DeValue::Table(t) = value.get_ref() {
                if let Some((k, _)) = t.iter().next() {
                    let at = cx.at(k.span());
                    let name = k.get_ref().to_string();
                    let suggestion = suggest(&name, COMMON_FIELDS.iter().copied());
                    cx.push(DagError::UnknownField {
                        at,
                        name,
                        suggestion,
                    });
                    return None;
                }
            }
            Some(TaskKind::Noop)
        }
        "command" => cx
            .de(value, &known)
            .and_then(|raw| command(cx, raw))
            .map(TaskKind::Command),
        "sql" => cx
            .de(value, &known)
            .and_then(|raw| sql(cx, raw, span.clone(), options))
            .map(TaskKind::Sql),
        "http" => cx
            .de(value, &known)
            .and_then(|raw| http(cx, raw, options))
            .map(TaskKind::Http),
        "ecs" => cx
            .de(value, &known)
            .and_then(|raw| ecs(cx, raw, span, options))
            .map(TaskKind::Ecs),
        "sensor" => sensor(cx, span, value, &known, options).map(TaskKind::Sensor),
        "approval" => super::approval::approval(cx, value, &known).map(TaskKind::Approval),
        "require" => super::require::require(cx, value, &known).map(TaskKind::Require),
        "athena" => cx
            .de(value, &known)
            .and_then(|raw| super::warehouse::athena(cx, raw, span))
            .map(TaskKind::Athena),
        "redshift" => cx
            .de(value, &known)
            .and_then(|raw| super::warehouse::redshift(cx, raw, span))
            .map(TaskKind::Redshift),
        "bigquery" => cx
            .de(value, &known)
            .and_then(|raw| super::warehouse::bigquery(cx, raw, span, options))
            .map(TaskKind::Bigquery),
        _ => None,
    }
}

pub(super) fn command(cx: &mut Ctx<'_>, raw: RawCommand) -> Option<CommandTask> {
    let span = raw.command.span();
    let command = raw.command.into_inner();
    let empty = match &command {
        CommandLine::Shell(s) => s.trim().is_empty(),
        CommandLine::Argv(argv) => argv.first().is_none_or(|a| a.is_empty()),
    };
    if empty {
        cx.invalid(span, "command is empty");
        return None;
    }
    Some(CommandTask {
        command,
        env: raw.env,
        cwd: raw.cwd,
        skip_on_exit_code: raw.skip_on_exit_code.unwrap_or_else(|| vec![99]),
    })
}

pub(super) fn connection(
    cx: &mut Ctx<'_>,
    v: &Spanned<String>,
    options: &ParseOptions,
) -> Option<String> {
    let name = cx.name(Some(v), "connection")?;
    if let Some(known) = &options.connections {
        if !known.contains(&name) {
            let at = cx.at(v.span());
            let suggestion = suggest(&name, known.iter().map(String::as_str));
            cx.push(DagError::UnknownConnection {
                at,
                name,
                suggestion,
            });
            return None;
        }
    }
    Some(name)
}

pub(super) fn sql(
    cx: &mut Ctx<'_>,
    raw: RawSql,
    span: Range<usize>,
    options: &ParseOptions,
) -> Option<SqlTask> {
    let connection = connection(cx, &raw.connection, options);
    let source = match (raw.sql, raw.sql_file) {
        (Some(_), Some(file)) => {
            cx.invalid(file.span(), "set either sql or sql_file, not both");
            None
        }
        (None, None) => {
            let table = cx
                .index
                .lookup(span.start)
                .map(|e| e.path())
                .unwrap_or_default();
            let at = cx.at_field(Some(span), &join_path(&table, "sql"));
            cx.push(DagError::MissingField {
                at,
                name: "sql".into(),
                hint: Some("a sql task needs sql or sql_file".into()),
            });
            None
        }
        (Some(text), None) if text.get_ref().trim().is_empty() => {
            cx.invalid(text.span(), "sql is empty");
            None
        }
        (Some(text), None) => Some(SqlSource::Sql(text.into_inner())),
        (None, Some(file)) if file.get_ref().trim().is_empty() => {
            cx.invalid(file.span(), "sql_file is empty");
            None
        }
        (None, Some(file)) => Some(SqlSource::SqlFile {
            path: file.into_inner(),
            text: None,
        }),
    };
    Some(SqlTask {
        connection: connection?,
        source: source?,
        parameters: table_to_json(&raw.parameters).into_iter().collect(),
        transaction: raw.transaction.is_some_and(|t| *t.get_ref()),
    })
}

pub(super) fn http(cx: &mut Ctx<'_>, raw: RawHttp, options: &ParseOptions) -> Option<HttpTask> {
    let connection = raw.connection.as_ref().map(|c| connection(cx, c, options));
    check_url(
        cx,
        raw.url.get_ref(),
        raw.url.span(),
        raw.connection.is_some(),
    );
    let method = method(cx, raw.method.as_ref(), "GET");
    if let (Some(body), Some(_)) = (&raw.body, &raw.json) {
        cx.invalid(body.span(), "set either body or json, not both");
        return None;
    }
    let expect_status = match &raw.expect_status {
        None => Some(vec![StatusRange {
            start: 200,
            end: 299,
        }]),
        Some(list) => expect_status(cx, list),
    };
    let json_check = match raw.json_check {
        Some(c) => cx.json(&c.equals).map(|equals| {
            Some(JsonCheck {
                path: c.path,
                equals,
            })
        }),
        None => Some(None),
    };
    let json = match &raw.json {
        Some(j) => cx.json(j).map(Some),
        None => Some(None),
    };
    Some(HttpTask {
        connection: match connection {
            Some(c) => Some(c?),
            None => None,
        },
        method: method?,
        url: raw.url.into_inner(),
        headers: raw.headers,
        query: raw.query,
        body: raw.body.map(Spanned::into_inner),
        json: json?,
        expect_status: expect_status?,
        json_check: json_check?,
    })
}

pub(super) fn expect_status(
    cx: &mut Ctx<'_>,
    list: &Spanned<Vec<Spanned<toml::Value>>>,
) -> Option<Vec<StatusRange>> {
    if list.get_ref().is_empty() {
        cx.invalid(list.span(), "expect_status is empty");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in list.get_ref() {
        match status_range(item.get_ref()) {
            Ok(r) => out.push(r),
            Err(message) => {
                cx.invalid(item.span(), message);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

pub(super) fn status_range(v: &toml::Value) -> Result<StatusRange, String> {
    let code = |n: i64| -> Result<u16, String> {
        u16::try_from(n)
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(|| format!("{n} is not an HTTP status (100-599)"))
    };
    let number = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("invalid status range {s:?}: expected e.g. 200 or \"200-299\""))
            .and_then(code)
    };
    match v {
        toml::Value::Integer(n) => code(*n).map(|c| StatusRange { start: c, end: c }),
        toml::Value::String(s) => {
            let (start, end) = match s.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None => {
                    let c = number(s)?;
                    (c, c)
                }
            };
            if start > end {
                return Err(format!("invalid status range {s:?}: start is after end"));
            }
            Ok(StatusRange { start, end })
        }
        other => Err(format!(
            "expected a status code or a range such as \"200-299\", found {}",
            other.type_str()
        )),
    }
}

pub(super) fn ecs(
    cx: &mut Ctx<'_>,
    raw: RawEcs,
    span: Range<usize>,
    options: &ParseOptions,
) -> Option<EcsTask> {
    let mut ok = true;
    let connection = match &raw.connection {
        Some(c) => {
            let c = connection(cx, c, options);
            ok &= c.is_some();
            c
        }
        None => None,
    };
    let field_of = |cx: &Ctx<'_>, name: &str| {
        let table = cx
            .index
            .lookup(span.start)
            .map(|e| e.path())
            .unwrap_or_default();
        join_path(&table, name)
    };
    for (name, value) in [
        ("cluster", &raw.cluster),
        ("task_definition", &raw.task_definition),
    ] {
        if value.trim().is_empty() {
            let at = cx.at_field(Some(span.clone()), &field_of(cx, name));
            cx.push(DagError::InvalidValue {
                at,
                message: format!("{name} must not be empty"),
            });
            ok = false;
        }
    }
    let launch_type = match &raw.launch_type {
        None => None,
        Some(lt) => match lt.get_ref().to_ascii_uppercase().as_str() {
            "FARGATE" => Some(LaunchType::Fargate),
            "EC2" => Some(LaunchType::Ec2),
            "EXTERNAL" => Some(LaunchType::External),
            _ => {
                cx.invalid(
                    lt.span(),
                    format!(
                        "unknown launch_type {:?}, expected one of: FARGATE, EC2, EXTERNAL",
                        lt.get_ref()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    let capacity_provider_strategy: Vec<CapacityProviderItem> = match raw.capacity_provider_strategy
    {
        None => Vec::new(),
        Some(list) => {
            if raw.launch_type.is_some() {
                cx.invalid(
                    list.span(),
                    "set either launch_type or capacity_provider_strategy, not both",
                );
                ok = false;
            } else if list.get_ref().is_empty() {
                cx.invalid(list.span(), "capacity_provider_strategy is empty");
                ok = false;
            }
            list.into_inner()
                .into_iter()
                .map(|p| CapacityProviderItem {
                    capacity_provider: p.capacity_provider,
                    weight: p.weight,
                    base: p.base,
                })
                .collect()
        }
    };
    if launch_type == Some(LaunchType::Fargate) && raw.subnets.is_empty() {
        let at = cx.at_field(Some(span.clone()), &field_of(cx, "subnets"));
        cx.push(DagError::MissingField {
            at,
            name: "subnets".into(),
            hint: Some("Fargate tasks use awsvpc networking and need at least one subnet".into()),
        });
        ok = false;
    }
    let overrides = [
        raw.command.as_ref().map(|c| ("command", c.span())),
        raw.environment.as_ref().map(|c| ("environment", c.span())),
        raw.cpu.as_ref().map(|c| ("cpu", c.span())),
        raw.memory.as_ref().map(|c| ("memory", c.span())),
    ];
    if raw.container.is_none() {
        if let Some((name, at_span)) = overrides.iter().flatten().next() {
            let at = cx.at_field(Some(at_span.clone()), &field_of(cx, "container"));
            cx.push(DagError::MissingField {
                at,
                name: "container".into(),
                hint: Some(format!("{name} overrides apply to a named container")),
            });
            ok = false;
        }
    }
    if let Some(c) = &raw.command {
        if c.get_ref().is_empty() {
            cx.invalid(c.span(), "command is empty");
            ok = false;
        }
    }
    let propagate_tags = match &raw.propagate_tags {
        None => None,
        Some(p) => match p.get_ref().to_ascii_uppercase().as_str() {
            "TASK_DEFINITION" => Some(PropagateTags::TaskDefinition),
            "SERVICE" => Some(PropagateTags::Service),
            "NONE" => Some(PropagateTags::None),
            _ => {
                cx.invalid(
                    p.span(),
                    format!(
                        "unknown propagate_tags {:?}, expected one of: TASK_DEFINITION, SERVICE, NONE",
                        p.get_ref()
                    ),
                );
                ok = false;
                None
            }
        },
    };
    if raw.awslogs_stream_prefix.is_some() && raw.awslogs_group.is_none() {
        let at = cx.at_field(Some(span.clone()), &field_of(cx, "awslogs_group"));
        cx.push(DagError::MissingField {
            at,
            name: "awslogs_group".into(),
            hint: Some("awslogs_stream_prefix needs the log group".into()),
        });
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(EcsTask {
        connection,
        cluster: raw.cluster,
        task_definition: raw.task_definition,
        revision: raw.revision,
        launch_type,
        capacity_provider_strategy,
        platform_version: raw.platform_version,
        subnets: raw.subnets,
        security_groups: raw.security_groups,
        assign_public_ip: raw.assign_public_ip.unwrap_or(false),
        container: raw.container,
        command: raw.command.map(Spanned::into_inner),
        environment: raw.environment.map(Spanned::into_inner).unwrap_or_default(),
        cpu: raw.cpu.map(Spanned::into_inner),
        memory: raw.memory.map(Spanned::into_inner),
        tags: raw.tags,
        started_by: raw.started_by,
        propagate_tags,
        awslogs_group: raw.awslogs_group,
        awslogs_stream_prefix: raw.awslogs_stream_prefix,
        skip_on_exit_code: raw.skip_on_exit_code,
    })
}

pub(super) fn sensor(
    cx: &mut Ctx<'_>,
    span: Range<usize>,
    value: Spanned<DeValue<'_>>,
    known: &[&str],
    options: &ParseOptions,
) -> Option<SensorTask> {
    let DeValue::Table(table) = value.into_inner() else {
        return None;
    };
    let (mut own, mut check) = (DeTable::new(), DeTable::new());
    for (k, v) in table {
        if SENSOR_FIELDS.contains(&k.get_ref().as_ref()) {
            own.insert(k, v);
        } else {
            check.insert(k, v);
        }
    }
    let raw: RawSensor = cx.de(Spanned::new(span.clone(), DeValue::Table(own)), known)?;
    let poke_interval = match &raw.poke_interval {
        None => Some(SENSOR_DEFAULT_POKE_INTERVAL),
        Some(p) => cx.duration(Some(p), true),
    };
    let check_value = Spanned::new(span.clone(), DeValue::Table(check));
    let check = match raw.mode.get_ref().as_str() {
        "sql" => {
            let raw_sql: RawSql = cx.de(check_value, known)?;
            if let Some(t) = &raw_sql.transaction {
                cx.invalid(t.span(), "transaction does not apply to a sensor");
                return None;
            }
            SensorCheck::Sql(sql(cx, raw_sql, span, options)?)
        }
        "http" => {
            let raw_http: RawHttp = cx.de(check_value, known)?;
            SensorCheck::Http(http(cx, raw_http, options)?)
        }
        "s3" => {
            let raw_s3: RawS3 = cx.de(check_value, known)?;
            SensorCheck::S3(s3(cx, raw_s3, span)?)
        }
        other => {
            cx.invalid(
                raw.mode.span(),
                format!("unknown sensor mode {other:?}, expected one of: sql, http, s3"),
            );
            return None;
        }
    };
    Some(SensorTask {
        poke_interval: poke_interval?,
        soft_fail: raw.soft_fail.unwrap_or(false),
        check,
    })
}

/// A sensor's `mode = "s3"`: exactly one of `key` and `prefix`; `min_objects` only with
/// `prefix`; sizes and counts not negative.
fn s3(cx: &mut Ctx<'_>, raw: RawS3, span: Range<usize>) -> Option<S3Check> {
    let mut ok = true;
    if raw.bucket.get_ref().trim().is_empty() {
        cx.invalid(raw.bucket.span(), "bucket must not be empty");
        ok = false;
    }
    let target = match (raw.key, raw.prefix) {
        (Some(key), None) => {
            if key.get_ref().is_empty() {
                cx.invalid(
                    key.span(),
                    "key must not be empty (use prefix = \"\" for any object)",
                );
                ok = false;
            }
            Some(S3Target::Key(key.into_inner()))
        }
        (None, Some(prefix)) => Some(S3Target::Prefix(prefix.into_inner())),
        (Some(_), Some(prefix)) => {
            cx.invalid(prefix.span(), "give either key or prefix, not both");
            None
        }
        (None, None) => {
            let table = cx
                .index
                .lookup(span.start)
                .map(|e| e.path())
                .unwrap_or_default();
            let at = cx.at_field(Some(span), &join_path(&table, "key"));
            cx.push(DagError::MissingField {
                at,
                name: "key".into(),
                hint: Some(
                    "an s3 sensor needs key (one object) or prefix (objects under it)".into(),
                ),
            });
            None
        }
    };
    let mut count = |v: Option<Spanned<i64>>, name: &str, least: i64| -> Option<u64> {
        let v = v?;
        match u64::try_from(*v.get_ref()) {
            Ok(n) if *v.get_ref() >= least => Some(n),
            _ => {
                cx.invalid(v.span(), format!("{name} must be at least {least}"));
                ok = false;
                None
            }
        }
    };
    let min_size = count(raw.min_size, "min_size", 0).unwrap_or(0);
    let min_objects_span = raw.min_objects.as_ref().map(|v| v.span());
    let min_objects = count(raw.min_objects, "min_objects", 1);
    if let (Some(S3Target::Key(_)), Some(at)) = (&target, min_objects_span) {
        cx.invalid(at, "min_objects applies only with prefix");
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(S3Check {
        bucket: raw.bucket.into_inner(),
        target: target?,
        min_size,
        min_objects: min_objects.unwrap_or(1),
    })
}
