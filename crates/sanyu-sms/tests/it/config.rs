//! A provider's settings are read strictly: a misspelt or misplaced key is an
//! error at start-up, never a silently ignored limit or template.

use sanyu_sms::{ProviderConfig, VoiceProviderConfig};

#[test]
fn a_misspelt_or_misplaced_provider_setting_is_refused_and_the_right_one_read() {
    let good = r#"
kind = "aliyun"
access_key_id = "LTAI"
access_key_secret = "s"
sign_name = "测试学校"
http = { max_per_second = 100 }
[[templates]]
audience = "staff"
id = "SMS_1"
params = ["school", "case_ref"]
"#;
    let config: ProviderConfig = toml::from_str(good).expect("valid");
    assert_eq!(config.http().max_per_second, 100);

    let misspelt = good.replace("max_per_second", "max_per_sec");
    let error = toml::from_str::<ProviderConfig>(&misspelt).expect_err("misspelt");
    assert!(error.to_string().contains("max_per_sec"), "{error}");

    // `http` after `[[templates]]` belongs to the template in TOML: refused.
    let misplaced =
        good.replace("http = { max_per_second = 100 }\n", "") + "http = { max_per_second = 100 }\n";
    assert!(toml::from_str::<ProviderConfig>(&misplaced).is_err());

    let voice = r#"
kind = "tencent"
secret_id = "AKID"
secret_key = "k"
voice_sdk_app_id = "1400000001"
template_id = "1"
params = ["school"]
play_time = 2
"#;
    let error = toml::from_str::<VoiceProviderConfig>(voice).expect_err("play_time");
    assert!(error.to_string().contains("play_time"), "{error}");
}

#[test]
fn a_provider_sends_a_digest_only_with_an_approved_digest_template() {
    use sanyu_sms::{Audience, Locale};
    let staff_only = r#"
kind = "aliyun"
access_key_id = "LTAI"
access_key_secret = "s"
sign_name = "测试学校"
[[templates]]
audience = "staff"
id = "SMS_1"
params = ["school", "case_ref"]
"#;
    let provider =
        sanyu_sms::build_provider(&toml::from_str(staff_only).expect("valid")).expect("built");
    assert!(provider.can_send(Audience::Staff, Locale::ZhCn));
    assert!(!provider.can_send(Audience::Digest, Locale::ZhCn));
    let with_digest = format!(
        "{staff_only}[[templates]]\naudience = \"digest\"\nid = \"SMS_2\"\nparams = [\"school\", \"count\", \"level\", \"refs\", \"link\"]\n"
    );
    let provider =
        sanyu_sms::build_provider(&toml::from_str(&with_digest).expect("valid")).expect("built");
    assert!(provider.can_send(Audience::Digest, Locale::ZhCn));
    assert!(!provider.can_send(Audience::Digest, Locale::En));
    // A digest template may not ask for anything else.
    let asks_more = with_digest.replace("\"link\"]", "\"link\", \"time\"]");
    assert!(sanyu_sms::build_provider(&toml::from_str(&asks_more).expect("valid")).is_err());
}
