//! Every string of the console, Chinese first and English beside it, in one
//! table. A page asks for `t.<key>`; the language is `?lang=`, then the
//! `sanyu_lang` cookie, then `Accept-Language`, else Chinese.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "zh" | "zh-CN" | "zh-cn" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of a request without `?lang=`: the cookie, then the
    /// first language of `Accept-Language` that the console has.
    pub fn of(headers: &HeaderMap, query_lang: Option<&str>) -> Self {
        if let Some(l) = query_lang.and_then(Lang::parse) {
            return l;
        }
        if let Some(l) = super::session::cookie(headers, super::session::LANG_COOKIE)
            .as_deref()
            .and_then(Lang::parse)
        {
            return l;
        }
        let accept = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for tag in accept.split(',') {
            let tag = tag.split(';').next().unwrap_or("").trim().to_lowercase();
            if tag.starts_with("zh") {
                return Lang::Zh;
            }
            if tag.starts_with("en") {
                return Lang::En;
            }
        }
        Lang::Zh
    }
}

/// key, Chinese, English.
const STRINGS: &[(&str, &str, &str)] = &[
    ("app_name", "三预 · 危机干预", "Sanyu crisis console"),
    ("skip_to_content", "跳到正文", "Skip to content"),
    ("other_language", "English", "中文"),
    ("sign_in_title", "登录", "Sign in"),
    (
        "sign_in_intro",
        "输入您的工号、邮箱或手机号，我们会把一次性验证码发到您登记的邮箱。",
        "Enter your staff number, email or phone; a one-time code goes to your registered email.",
    ),
    (
        "identifier_label",
        "工号、邮箱或手机号",
        "Staff number, email or phone",
    ),
    ("send_code", "发送验证码", "Send a code"),
    (
        "code_sent",
        "如果该账号存在，验证码已发送到其登记的邮箱，10 分钟内有效，只能使用一次。",
        "If the account exists, a code was sent to its email. It works once, for 10 minutes.",
    ),
    ("code_label", "验证码（6 位数字）", "Code (6 digits)"),
    ("sign_in_button", "登录", "Sign in"),
    ("new_code", "重新获取验证码", "Ask for a new code"),
    (
        "code_wrong",
        "验证码不正确。剩余尝试次数：",
        "That code is not right. Tries left: ",
    ),
    (
        "code_locked",
        "尝试次数过多，此验证码已失效。请重新获取。",
        "Too many tries: this code no longer works. Ask for a new one.",
    ),
    (
        "code_used",
        "此验证码已经使用过。请重新获取。",
        "This code was used already. Ask for a new one.",
    ),
    (
        "code_expired",
        "验证码已过期。请重新获取。",
        "This code has expired. Ask for a new one.",
    ),
    (
        "rate_limited",
        "请求过于频繁，请稍后再试。",
        "Too many requests; try again later.",
    ),
    (
        "csrf_failed",
        "表单已失效，请返回刷新页面后重试。",
        "This form has expired; go back, reload the page and try again.",
    ),
    (
        "session_ended",
        "登录已过期，请重新登录。",
        "Your session has ended; sign in again.",
    ),
    ("signed_out", "您已退出登录。", "You are signed out."),
    ("sign_out", "退出", "Sign out"),
    ("signed_in_as", "当前角色：", "Signed in as: "),
    ("queue_title", "我的待办", "My queue"),
    ("filter_label", "显示", "Show"),
    ("filter_all", "全部", "All"),
    ("filter_mine", "分配给我", "Assigned to me"),
    ("filter_unassigned", "未分配", "Unassigned"),
    ("no_cases", "没有未结案的个案。", "No open cases."),
    ("unacknowledged", "待确认", "Not acknowledged"),
    ("overdue_by", "已超时", "Overdue by"),
    ("time_left", "剩余", "Left:"),
    ("minutes", "分钟", "min"),
    ("seconds", "秒", "s"),
    (
        "refresh_note",
        "本页每 15 秒自动刷新。",
        "This page refreshes every 15 s.",
    ),
    ("level_critical", "一级 · 危急", "Critical"),
    ("level_high", "二级 · 高危", "High"),
    ("level_elevated", "三级 · 较高", "Elevated"),
    ("level_watch", "关注", "Watch"),
    ("status_open", "待确认", "Open"),
    ("status_acknowledged", "已确认", "Acknowledged"),
    ("status_in_progress", "处理中", "In progress"),
    ("status_referred", "已转介", "Referred"),
    ("status_monitoring", "跟踪观察", "Monitoring"),
    ("status_closed", "已结案", "Closed"),
    ("case_title", "个案", "Case"),
    ("level", "风险等级", "Risk level"),
    ("status", "状态", "Status"),
    (
        "acknowledge",
        "确认接手（停止逐级上报）",
        "Acknowledge (stops the escalation)",
    ),
    (
        "acknowledged_ok",
        "已确认。逐级上报已停止。",
        "Acknowledged. The escalation has stopped.",
    ),
    (
        "conflict_acknowledge",
        "无法确认：此个案已被确认或已结案。",
        "Cannot acknowledge: this case was acknowledged already or is closed.",
    ),
    ("student", "学生", "Student"),
    ("student_no", "学号", "Student no."),
    ("class", "班级", "Class"),
    (
        "unidentified_caller",
        "身份未识别的来电者",
        "Unidentified caller",
    ),
    ("ack_deadline", "确认期限", "Acknowledge by"),
    ("acknowledged_at", "确认时间", "Acknowledged at"),
    ("assignee", "负责人", "Assigned to"),
    ("nobody", "（无）", "(nobody)"),
    ("opened_at", "开案时间", "Opened"),
    ("ladder", "逐级上报", "Escalation"),
    (
        "ladder_running",
        "进行中（等待确认）",
        "running (waiting for an acknowledgement)",
    ),
    ("ladder_stopped", "已停止", "stopped"),
    (
        "ladder_exhausted",
        "已全部上报，仍未确认",
        "exhausted, still unacknowledged",
    ),
    (
        "ladder_plan",
        "逐级上报计划（未确认时）",
        "Escalation plan (while unacknowledged)",
    ),
    ("ladder_first", "立即通知", "At once"),
    ("ladder_repeat", "重复轮数：", "Rounds: "),
    ("why", "开案原因", "Why this case"),
    ("rule", "规则", "Rule"),
    ("signals", "信号", "Signals"),
    ("category", "类别", "Category"),
    ("observed_at", "观察时间", "Observed"),
    ("narrative", "描述", "Narrative"),
    ("notifications", "通知记录", "Who was told"),
    ("recipient", "接收人", "Recipient"),
    ("channel", "渠道", "Channel"),
    ("sent_at", "发送时间", "Sent"),
    ("timeline", "处理记录", "Timeline"),
    ("actor", "操作人", "By"),
    ("at", "时间", "When"),
    ("action", "操作", "Action"),
    ("follow_ups", "随访", "Follow-ups"),
    ("due_at", "到期", "Due"),
    ("done_at", "完成", "Done"),
    ("none", "无", "None"),
    ("not_found_title", "未找到", "Not found"),
    (
        "not_found_text",
        "没有这个个案，或者您无权查看。",
        "There is no such case, or it is not one you may see.",
    ),
    ("forbidden_title", "无权访问", "Not allowed"),
    (
        "forbidden_text",
        "您的角色不能使用此页面。",
        "Your role may not use this page.",
    ),
    ("unavailable_title", "暂时不可用", "Unavailable"),
    (
        "unavailable_text",
        "服务暂时不可用，请稍后重试。",
        "The service is unavailable for a moment; try again.",
    ),
    ("error_title", "出错了", "Something went wrong"),
    (
        "error_text",
        "请求未能完成，请稍后重试。",
        "The request could not be completed; try again.",
    ),
    ("back_to_queue", "返回待办", "Back to the queue"),
    (
        "api_docs",
        "API 文档（信息技术人员）",
        "API reference (IT staff)",
    ),
    ("role_counsellor", "心理教师", "Counsellor"),
    ("role_crisis_team", "危机干预小组", "Crisis team"),
    ("role_leader", "学校领导", "School leader"),
    ("role_teacher", "班主任", "Head teacher"),
    ("role_district", "区教育局", "District officer"),
    ("role_admin", "管理员", "Administrator"),
    ("role_monitor", "心理委员", "Class monitor"),
    ("role_service", "系统", "System"),
    ("channel_email", "邮件", "email"),
    ("channel_sms", "短信", "SMS"),
];

/// The catalogue of `lang`: key → string.
pub fn catalogue(lang: Lang) -> &'static BTreeMap<&'static str, &'static str> {
    static ZH: OnceLock<BTreeMap<&str, &str>> = OnceLock::new();
    static EN: OnceLock<BTreeMap<&str, &str>> = OnceLock::new();
    match lang {
        Lang::Zh => ZH.get_or_init(|| STRINGS.iter().map(|(k, zh, _)| (*k, *zh)).collect()),
        Lang::En => EN.get_or_init(|| STRINGS.iter().map(|(k, _, en)| (*k, *en)).collect()),
    }
}

/// One string.
pub fn t(lang: Lang, key: &str) -> &'static str {
    catalogue(lang).get(key).copied().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_and_has_both_languages() {
        let mut seen = std::collections::HashSet::new();
        for (key, zh, en) in STRINGS {
            assert!(seen.insert(*key), "{key} twice");
            assert!(!zh.is_empty() && !en.is_empty(), "{key}");
        }
    }

    #[test]
    fn the_language_comes_from_the_query_then_the_header() {
        let mut h = HeaderMap::new();
        assert_eq!(Lang::of(&h, None), Lang::Zh);
        h.insert(
            axum::http::header::ACCEPT_LANGUAGE,
            "en-GB,en;q=0.9".parse().expect("header"),
        );
        assert_eq!(Lang::of(&h, None), Lang::En);
        assert_eq!(Lang::of(&h, Some("zh")), Lang::Zh);
    }
}
