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
