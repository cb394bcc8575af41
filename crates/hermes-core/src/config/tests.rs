use super::*;

fn inputs<'a>(env: &[(&str, &str)], dotenv: &[(&str, &str)], yaml: Option<&'a str>) -> Inputs<'a> {
    let map = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Inputs { env: map(env), dotenv: map(dotenv), yaml }
}

#[test]
fn defaults_follow_hermes() {
    let r = resolve(&Inputs::default());
    let wa = &r.config.whatsapp;
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    assert_eq!(wa.mode.value, Mode::SelfChat);
    assert_eq!(wa.dm_policy.value, Policy::Pairing);
    assert_eq!(wa.group_policy.value, Policy::Pairing);
    assert!(wa.allowed_users.value.is_unset());
    assert_eq!(wa.reply_prefix.value, "⚕ *Hermes Agent*\n────────────\n");
    assert_eq!(wa.text_batch_delay_seconds.value, 0.3);
    assert_eq!(wa.mode.origin, Origin::Default);
}

#[test]
fn precedence_is_env_then_dotenv_then_yaml() {
    let yaml = "whatsapp:\n  mode: bot\n  dm_policy: allowlist\n  group_policy: open\n";
    let r = resolve(&inputs(
        &[("WHATSAPP_DM_POLICY", "disabled")],
        &[("WHATSAPP_DM_POLICY", "open"), ("WHATSAPP_GROUP_POLICY", "allowlist")],
        Some(yaml),
    ));
    let wa = &r.config.whatsapp;
    assert_eq!(wa.dm_policy.value, Policy::Disabled);
    assert_eq!(wa.dm_policy.origin, Origin::Env("WHATSAPP_DM_POLICY".into()));
    assert_eq!(wa.group_policy.value, Policy::Allowlist);
    assert_eq!(wa.group_policy.origin, Origin::DotEnv("WHATSAPP_GROUP_POLICY".into()));
    assert_eq!(wa.mode.value, Mode::Bot);
    assert_eq!(wa.mode.origin, Origin::Yaml { path: "whatsapp.mode".into(), line: 2 });
}

#[test]
fn invalid_values_name_key_value_origin_and_accepted_values() {
    let r = resolve(&inputs(&[], &[("WHATSAPP_DM_POLICY", "opne")], Some("whatsapp:\n  require_mention: maybe\n")));
    let msgs: Vec<String> = r.errors().map(ToString::to_string).collect();
    assert_eq!(
        msgs,
        vec![
            "WHATSAPP_DM_POLICY (.env WHATSAPP_DM_POLICY): 'opne' is not valid; accepted values: open, allowlist, pairing, disabled",
            "whatsapp.require_mention (config.yaml whatsapp.require_mention (line 2)): 'maybe' is not valid; accepted values: true, false (also 1/0, yes/no, on/off)",
        ]
    );
    // The bad value is not used: the default stands, so nothing half-applies.
    assert_eq!(r.config.whatsapp.dm_policy.value, Policy::Pairing);
}

#[test]
fn unknown_keys_warn_with_the_nearest_name() {
    let r = resolve(&inputs(
        &[("WHATSAPP_ALLOWED_USER", "1"), ("WHATSAPP_CHUNK_DELAY_MS", "300"), ("PATH", "/bin")],
        &[],
        Some("whatsapp:\n  dm_polcy: open\n  zzz: 1\nplatforms:\n  whatsapp:\n    extra:\n      bridge_port: 3000\n"),
    ));
    let msgs: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
    assert!(r.errors().next().is_none());
    assert_eq!(
        msgs,
        vec![
            "WHATSAPP_ALLOWED_USER (environment variable WHATSAPP_ALLOWED_USER): is not a setting hermes knows; did you mean WHATSAPP_ALLOWED_USERS?",
            "WHATSAPP_CHUNK_DELAY_MS (environment variable WHATSAPP_CHUNK_DELAY_MS): has no effect in hermes: it configured Hermes' Node bridge, which hermes does not have; remove it to silence this warning",
            "whatsapp.dm_polcy (config.yaml whatsapp.dm_polcy (line 2)): is not a setting hermes knows; did you mean whatsapp.dm_policy?",
            "whatsapp.zzz (config.yaml whatsapp.zzz (line 3)): is not a setting hermes knows; remove it; whatsapp knows: dm_policy, group_policy, allow_from, group_allow_from, require_mention, mention_patterns, free_response_chats, reply_prefix, unauthorized_dm_behavior, send_read_receipts, mode, home_channel, text_batch_delay_seconds, min_free_mb, max_input_chars, max_history_chars, retention_days, max_media_mb, agent, agent_url, agent_notice_seconds, reminders_poll_seconds, handoff_minutes, send_per_minute, chat_send_per_minute, observe_unmentioned_group_messages, group_context_messages, loop_turns, loop_minutes",
            "platforms.whatsapp.extra.bridge_port (config.yaml platforms.whatsapp.extra.bridge_port (line 7)): has no effect in hermes: hermes has no Node bridge; remove it to silence this warning",
        ]
    );
}

#[test]
fn yaml_allowlists_keep_leading_zeros_and_positions() {
    let r = resolve(&inputs(&[], &[], Some("whatsapp:\n  allow_from:\n    - 0151 2345678\n    - 15551234567\n")));
    let list = &r.config.whatsapp.allowed_users.value;
    assert_eq!(list.entries().len(), 2);
    assert!(list.entries()[0].outcome.is_err(), "the national 0 must not be eaten by YAML");
    assert_eq!(list.entries()[1].normalized().as_deref(), Some("15551234567"));
}

#[test]
fn extra_block_and_aliases_are_read() {
    let yaml = "platforms:\n  whatsapp:\n    enabled: true\n    extra:\n      session_path: /data/wa\n      allowFrom: [\"15551234567\"]\n";
    let r = resolve(&inputs(&[("WHATSAPP_GROUP_ALLOW_FROM", "120363001234567890@g.us,123")], &[], Some(yaml)));
    let wa = &r.config.whatsapp;
    assert!(wa.enabled.value);
    assert_eq!(wa.session_path.value.as_deref(), Some("/data/wa"));
    assert_eq!(wa.allowed_users.value.entries().len(), 1);
    assert_eq!(wa.group_allowed.value.len(), 1);
    let errs: Vec<String> = r.errors().map(|d| d.message.clone()).collect();
    assert_eq!(errs, vec!["entry #2 '123' is not a group JID"]);
}

#[test]
fn reply_prefix_escapes_and_bad_regexes() {
    let r = resolve(&inputs(
        &[("WHATSAPP_REPLY_PREFIX", "🤖 Bot\\n"), ("WHATSAPP_MENTION_PATTERNS", r#"["^hermes\\b", "(unclosed"]"#)],
        &[],
        None,
    ));
    assert_eq!(r.config.whatsapp.reply_prefix.value, "🤖 Bot\n");
    assert_eq!(r.config.whatsapp.mention_patterns.value, vec![r"^hermes\b"]);
    let err = r.errors().next().expect("bad regex reported");
    assert!(err.message.starts_with("pattern '(unclosed' is not a valid regular expression"), "{}", err.message);
}

#[test]
fn model_block_as_string_or_mapping_and_keys_by_provider() {
    let r = resolve(&inputs(
        &[("OPENROUTER_API_KEY", "or-key"), ("OPENAI_API_KEY", "oa-key")],
        &[],
        Some("model: gpt-4o-mini\n"),
    ));
    assert_eq!(r.config.model.name.value.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(r.config.model.api_key.value.as_ref().map(Secret::expose), Some("oa-key"));

    let yaml = "model:\n  provider: openrouter\n  default: anthropic/claude-sonnet-4\n  base_url: https://openrouter.ai/api/v1\n";
    let r = resolve(&inputs(&[("OPENROUTER_API_KEY", "or-key"), ("OPENAI_API_KEY", "oa-key")], &[], Some(yaml)));
    assert_eq!(r.config.model.name.value.as_deref(), Some("anthropic/claude-sonnet-4"));
    assert_eq!(r.config.model.api_key.value.as_ref().map(Secret::expose), Some("or-key"));
    assert_eq!(r.config.model.api_key.origin, Origin::Env("OPENROUTER_API_KEY".into()));
}

#[test]
fn broken_yaml_is_one_error_and_the_rest_still_resolves() {
    let r = resolve(&inputs(&[("WHATSAPP_MODE", "bot")], &[], Some("whatsapp:\n  dm_policy: [open\n")));
    assert_eq!(r.errors().count(), 1);
    assert!(r.errors().next().is_some_and(|d| d.key == "config.yaml"));
    assert_eq!(r.config.whatsapp.mode.value, Mode::Bot);
}

fn agent_of(dotenv: &[(&str, &str)], yaml: Option<&str>) -> AgentConfig {
    let inputs = Inputs {
        env: BTreeMap::new(),
        dotenv: dotenv.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        yaml,
    };
    resolve(&inputs).config.agent
}

#[test]
fn hermes_api_server_in_dotenv_makes_it_the_agent() {
    // Nothing said: the model block.
    assert_eq!(agent_of(&[], None).brain(), (Brain::Model, None));
    // Hermes' own `.env` enabling its API server: hermes uses it, on loopback.
    let a = agent_of(&[("API_SERVER_ENABLED", "true"), ("API_SERVER_KEY", "k".repeat(32).as_str())], None);
    let (brain, why) = a.brain();
    assert_eq!(why, None);
    assert_eq!(brain, Brain::Hermes { base_url: "http://127.0.0.1:8642/v1".into(), key: Secret::new("k".repeat(32)) });
    // The key alone enables it in Hermes, and here; a wildcard host is reached on loopback.
    let a = agent_of(
        &[("API_SERVER_KEY", "secret-key-0123456789"), ("API_SERVER_HOST", "0.0.0.0"), ("API_SERVER_PORT", "9000")],
        None,
    );
    assert!(matches!(a.brain().0, Brain::Hermes { base_url, .. } if base_url == "http://127.0.0.1:9000/v1"));
    // Enabled without a key: Hermes will not start its server; the model answers, and why is said.
    let (brain, why) = agent_of(&[("API_SERVER_ENABLED", "true")], None).brain();
    assert_eq!(brain, Brain::Model);
    assert!(why.expect("a reason").contains("API_SERVER_KEY"));
}

#[test]
fn an_explicit_choice_overrides_the_detection() {
    let key = ("API_SERVER_KEY", "secret-key-0123456789");
    let a = agent_of(&[key], Some("whatsapp:\n  agent: model\n"));
    assert_eq!(a.brain(), (Brain::Model, None));
    let a = agent_of(&[key, ("WHATSAPP_AGENT_URL", "http://agent.example:8642/v1/")], None);
    assert!(matches!(a.brain().0, Brain::Hermes { base_url, .. } if base_url == "http://agent.example:8642/v1"));
    let (brain, why) = agent_of(&[], Some("whatsapp:\n  agent: hermes\n")).brain();
    assert_eq!(brain, Brain::Model);
    assert!(why.is_some());
    let bad = resolve(&Inputs { yaml: Some("whatsapp:\n  agent: gpt\n"), ..Inputs::default() });
    assert!(bad.diagnostics.iter().any(|d| d.key == "whatsapp.agent" && d.fix.contains("auto, hermes, model")));
}

#[test]
fn group_sessions_per_user_is_read_where_hermes_reads_it() {
    assert!(agent_of(&[], None).group_sessions_per_user.value);
    assert!(!agent_of(&[], Some("group_sessions_per_user: false\n")).group_sessions_per_user.value);
    assert!(!agent_of(&[], Some("gateway:\n  group_sessions_per_user: false\n")).group_sessions_per_user.value);
}
