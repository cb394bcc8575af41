//! `hermes demo`: the README's run command works on a machine with nothing configured, and
//! uses the configured model when there is one that answers.

use hermes_agent::loopback::LoopbackLlm;

use crate::support::Home;

#[test]
fn the_demo_shows_an_answer_and_an_explained_drop_with_nothing_configured() {
    let run = Home::new().run(&["demo"]);
    assert_eq!(run.code, 0, "{run:?}");
    let out = &run.stdout;
    assert!(out.contains("Using the built-in offline responder (no model is configured"), "{out}");
    assert!(
        out.contains(
            "Hermes -> +4915100001111: [offline demo responder, no AI model configured] You wrote: \"Hi Hermes!"
        ),
        "{out}"
    );
    assert!(out.contains("rule: not_allowlisted"), "{out}");
    assert!(out.contains("to admit: WHATSAPP_ALLOWED_USERS=4915100001111,447700900123"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_uses_the_configured_model_when_it_answers() {
    let llm = LoopbackLlm::start(0).await.expect("llm");
    let home = Home::new().with_yaml(&format!("model:\n  default: my-model\n  base_url: {}\n", llm.base_url()));
    let run = tokio::task::block_in_place(|| home.run(&["demo"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("Using the configured model my-model"), "{}", run.stdout);
    // One probe, then the contact's question; the stranger never reaches it.
    assert_eq!(llm.requests().len(), 2);

    let offline = tokio::task::block_in_place(|| home.run(&["demo", "--offline"]));
    assert!(offline.stdout.contains("Using the built-in offline responder (--offline)"), "{}", offline.stdout);
    assert_eq!(llm.requests().len(), 2, "--offline never asks the configured model");
}
