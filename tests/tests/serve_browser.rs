//! The page at `/` in headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs), driven over WebDriver: it loads the model's defaults, submits a prompt,
//! follows the progress and shows the picture with its cache trace, a column per step.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use dicache_serve::Limits;
use dicache_tests::Cpu;
use fantoccini::{ClientBuilder, Locator};
use serde_json::{Value, json};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_generates_a_picture_and_draws_its_trace() {
    let model = dicache_bench::serve::flux_mini::<Cpu>(None, 2, &Default::default()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        dicache_serve::serve(model, listener, Limits::default(), async {
            let _ = stopped.await;
        })
    });

    let driver_port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian's chromium-driver) must be installed: .ci/run installs it");
    let _driver = Killed(driver);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] }),
    );
    let webdriver = format!("http://127.0.0.1:{driver_port}");
    let start = Instant::now();
    let browser = loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&webdriver)
            .await
        {
            Ok(browser) => break browser,
            Err(e) if start.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot reach chromedriver: {e}"),
        }
    };

    browser.goto(&format!("http://{addr}/")).await.unwrap();
    // The defaults arrive from /v1/config.
    let size = browser.find(Locator::Id("size")).await.unwrap();
    wait_for(
        &browser,
        "return document.getElementById('size').value !== ''",
    )
    .await;
    assert_eq!(
        size.prop("value").await.unwrap().as_deref(),
        Some("128x128")
    );
    let steps = 6;
    for (id, value) in [("size", "64x64".to_string()), ("steps", steps.to_string())] {
        let field = browser.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(&value).await.unwrap();
    }
    let prompt = browser.find(Locator::Id("prompt")).await.unwrap();
    prompt.clear().await.unwrap();
    prompt.send_keys("a small yellow square").await.unwrap();
    browser
        .find(Locator::Id("generate"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The picture, loaded, and its trace: a column per step, computed or skipped.
    wait_for(
        &browser,
        "const img = document.querySelector('#result img'); \
         return img !== null && img.complete && img.naturalWidth === 64;",
    )
    .await;
    let columns = browser
        .execute(
            "return document.querySelectorAll('#trace svg rect').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(columns, json!(steps));
    let status = text_of(&browser, "status").await;
    assert!(
        status.contains(&format!("step {steps} of {steps}")),
        "{status}"
    );
    let error = text_of(&browser, "error").await;
    assert!(error.is_empty(), "{error}");
    browser.close().await.unwrap();

    stop.send(()).unwrap();
    server.join().unwrap().unwrap();
}

/// The text of the element with id `id`.
async fn text_of(browser: &fantoccini::Client, id: &str) -> String {
    let element = browser.find(Locator::Id(id)).await.unwrap();
    element.text().await.unwrap()
}

/// Waits (60 s at most) until the script returns true in the page.
async fn wait_for(browser: &fantoccini::Client, script: &str) {
    let start = Instant::now();
    loop {
        if browser.execute(script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        let page = browser.source().await.unwrap_or_default();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited for {script}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
