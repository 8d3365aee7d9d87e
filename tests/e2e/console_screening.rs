//! The console's screening imports in a real browser (chromium through
//! chromedriver, as `console`): a counsellor signs in, uploads the screening
//! tests' mixed PHQ-9 file with the upload form, watches the import finish on
//! its page (the progress bar, refreshed by htmx), and reads the band chart,
//! the results and a row error; a file that does not fit the instrument comes
//! back on the form with the reason in words. axe-core on every page (0
//! serious or critical violations); screenshots at 375 px and 1280 px under
//! `target/console-screenshots/` (`screening-*`).

use std::time::{Duration, Instant};

use fantoccini::Locator;
use sanyu_e2e::Stack;
use sanyu_e2e::support::TestDb;

use crate::console::{
    browser, browser_sign_in, screenshot_dir, shoot, start_driver, wait_for_path,
};
use crate::screening::MIXED_PHQ9;

/// The text of the element `css` once it exists (the page may reload while
/// an import finishes).
async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(text) = e.text().await
        {
            return text;
        }
        assert!(Instant::now() < deadline, "never found {css}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn choose(c: &fantoccini::Client, id: &str, value: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choose {value} in #{id}: {e}"));
}

async fn upload(c: &fantoccini::Client, file: &std::path::Path, instrument: &str) {
    c.find(Locator::Id("sc-file"))
        .await
        .expect("file field")
        .send_keys(&file.display().to_string())
        .await
        .expect("choose the file");
    choose(c, "sc-instrument", instrument).await;
    choose(c, "sc-coding", "0-3").await;
    c.find(Locator::Css("#sc-form button[type=submit]"))
        .await
        .expect("upload button")
        .click()
        .await
        .expect("upload");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_counsellor_uploads_a_screening_file_and_reads_its_bands_and_row_errors_in_a_browser() {
    let Some(driver) = start_driver().await else {
        return;
    };
    let spool = tempfile::tempdir().expect("spool dir");
    let mut stack = Stack::new(TestDb::sqlite()).await;
    let settings = [
        ("SANYU_CONSOLE__SECURE_COOKIE", "false".to_owned()),
        ("SANYU_HTTP__PUBLIC_BASE_URL", stack.base_url()),
        (
            "SANYU_SCREENING__SPOOL_DIR",
            spool.path().display().to_string(),
        ),
    ];
    stack.start_gateway_with(&settings).await;
    stack.start_notifier_with(&settings);
    let files = tempfile::tempdir().expect("files dir");
    let csv = files.path().join("phq9-mixed.csv");
    std::fs::write(&csv, MIXED_PHQ9).expect("write the file");

    let c = browser(&driver).await;
    c.goto(&format!("{}/screening", stack.base_url()))
        .await
        .expect("open the page");
    wait_for_path(&c, "/sign-in").await;
    let email = stack.school.counsellor_email.clone();
    browser_sign_in(&c, &stack, &email).await;
    wait_for_path(&c, "/screening").await;
    text_of(&c, "#sc-form").await;
    shoot(&c, "screening-form").await;

    // A file that does not fit the instrument: refused, the reason in words.
    upload(&c, &csv, "gad7").await;
    let refused = text_of(&c, "#sc-error").await;
    assert!(refused.contains("文件未导入"), "{refused}");
    shoot(&c, "screening-refused").await;

    // The file as it is: to the import's page, which follows it to the end.
    upload(&c, &csv, "phq9").await;
    wait_for_path(&c, "/screening/").await;
    let state = text_of(&c, "#sc-progress .badge").await;
    assert!(
        ["排队中", "导入中", "已完成"].contains(&state.trim()),
        "{state}"
    );
    // The band chart appears when it is done (htmx reloads the page).
    let chart = text_of(&c, "#sc-bands-phq9").await;
    let bar = c
        .find(Locator::Id("sc-bar"))
        .await
        .expect("progress bar")
        .attr("value")
        .await
        .expect("value");
    assert_eq!(bar.as_deref(), Some("100"));
    assert!(chart.contains("PHQ-9"), "{chart}");
    // S1 minimal, S3 moderately severe: two accepted rows with a band.
    let caption = text_of(&c, "#sc-bands-phq9 caption").await;
    assert!(caption.ends_with('2'), "{caption}");
    assert!(
        chart.contains("无或极轻") && chart.contains("中重度"),
        "{chart}"
    );
    let counts = text_of(&c, "#sc-counts").await;
    assert!(counts.contains('6'), "{counts}");
    let errors = text_of(&c, "#sc-errors").await;
    assert!(
        errors.contains("student number is not on the school's roster"),
        "{errors}"
    );
    let results = text_of(&c, "#sc-results").await;
    assert!(results.contains("16"), "S3's total: {results}");
    let html = c.source().await.expect("page source");
    for name in ["张三", "李四", "王五", "赵六"] {
        assert!(!html.contains(name), "the file's names are not on the page");
    }
    shoot(&c, "screening-import").await;
    // Below the fold on a phone: the chart, then the results and row errors.
    for (part, id) in [("bands", "sc-bands"), ("rows", "sc-errors")] {
        c.execute(
            &format!("document.getElementById('{id}').scrollIntoView(); return true;"),
            vec![],
        )
        .await
        .expect("scroll");
        let png = c.screenshot().await.expect("screenshot");
        std::fs::write(
            screenshot_dir().join(format!("screening-import-{part}-375.png")),
            png,
        )
        .expect("write screenshot");
    }

    // The list shows the import, done.
    c.goto(&format!("{}/screening", stack.base_url()))
        .await
        .expect("the list");
    let list = text_of(&c, "#sc-imports").await;
    assert!(
        list.contains("已完成") && list.contains("phq9-mixed.csv"),
        "{list}"
    );
    shoot(&c, "screening-list").await;
    c.execute(
        "document.getElementById('sc-imports').scrollIntoView(); return true;",
        vec![],
    )
    .await
    .expect("scroll");
    let png = c.screenshot().await.expect("screenshot");
    std::fs::write(screenshot_dir().join("screening-list-imports-375.png"), png)
        .expect("write screenshot");

    c.close().await.expect("close the browser");
    eprintln!("console screenshots: {}", screenshot_dir().display());
}
