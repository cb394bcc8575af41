//! The client against a real HTTP server on 127.0.0.1.

use std::time::Duration;

use hermes_agent::loopback::{Failure, LoopbackLlm};
use hermes_agent::{Agent, AgentError, Endpoint, Message, Retry, Speaker};

fn agent(llm: &LoopbackLlm, timeout: Duration) -> Agent {
    let endpoint = Endpoint { base_url: llm.base_url(), model: "test-model".into(), api_key: Some("sk-test".into()) };
    let retry =
        Retry { attempts: 3, first_delay: Duration::from_millis(5), max_delay: Duration::from_millis(20), timeout };
    Agent::new(endpoint, retry)
}

fn ask(text: &str) -> Vec<Message> {
    vec![Message::new(Speaker::System, "be brief"), Message::new(Speaker::User, text)]
}

#[tokio::test]
async fn answers_and_sends_the_conversation() {
    let llm = LoopbackLlm::start(0).await.expect("start");
    let answer = agent(&llm, Duration::from_secs(30)).complete(&ask("hello there")).await.expect("answer");
    assert!(answer.contains("You wrote: \"hello there\""), "{answer}");
    assert_eq!(llm.requests(), vec![ask("hello there")]);
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried() {
    let llm = LoopbackLlm::start(0).await.expect("start");
    llm.fail_next(Failure::Status(500));
    llm.fail_next(Failure::Status(429));
    let answer = agent(&llm, Duration::from_secs(30)).complete(&ask("hi")).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn gives_up_after_the_last_attempt_with_an_honest_message() {
    let llm = LoopbackLlm::start(0).await.expect("start");
    for _ in 0..3 {
        llm.fail_next(Failure::Status(503));
    }
    let err = agent(&llm, Duration::from_secs(30)).complete(&ask("hi")).await.expect_err("fails");
    assert!(matches!(err, AgentError::Status { status: 503, .. }), "{err:?}");
    assert!(err.for_user().starts_with("Sorry, I can't answer right now"));
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn a_refused_key_is_not_retried() {
    let llm = LoopbackLlm::start(0).await.expect("start");
    llm.fail_next(Failure::Status(401));
    let err = agent(&llm, Duration::from_secs(30)).complete(&ask("hi")).await.expect_err("fails");
    assert!(matches!(err, AgentError::Status { status: 401, .. }));
    assert!(err.for_user().contains("credentials"));
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn a_hung_server_times_out_and_is_retried() {
    let llm = LoopbackLlm::start(0).await.expect("start");
    llm.fail_next(Failure::Hang);
    let answer = agent(&llm, Duration::from_millis(300)).complete(&ask("hi")).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn an_unreachable_server_says_so() {
    // Bind and drop: a loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let endpoint = Endpoint { base_url: format!("http://127.0.0.1:{port}/v1"), model: "m".into(), api_key: None };
    let retry = Retry {
        attempts: 2,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
        timeout: Duration::from_secs(5),
    };
    let err = Agent::new(endpoint, retry).complete(&ask("hi")).await.expect_err("fails");
    assert!(matches!(err, AgentError::Unreachable(_)), "{err:?}");
    assert!(err.for_user().contains("not reachable"));
}
