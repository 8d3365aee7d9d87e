//! Every string of the console, Chinese first and English beside it, in one
//! table. A page asks for `t.<key>`; the language is `?lang=`, then the
//! `sanyu_lang` cookie, then `Accept-Language`, else Chinese.
//!
//! (Over 600 lines because the table is every text of every page, one row a
//! key; the code is the 80 lines around it. One table lets a translator or
//! a reviewer read both languages side by side, and the test below checks
//! that every key has both.)

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
        "输入您的工号、邮箱或手机号，我们会把一次性验证码和一次性登录链接发到您登记的邮箱。",
        "Enter your staff number, email or phone; a one-time code and a one-time sign-in link go to your registered email.",
    ),
    (
        "sign_in_intro_sms",
        "输入您的工号、邮箱或手机号，我们会把一次性验证码发到您登记的邮箱（附一次性登录链接）或手机。",
        "Enter your staff number, email or phone; a one-time code goes to your registered email (with a one-time sign-in link) or phone.",
    ),
    ("code_by_label", "验证码发送方式", "Send the code by"),
    (
        "code_by_email",
        "邮件（附一次性登录链接）",
        "Email (with a one-time sign-in link)",
    ),
    ("code_by_sms", "短信", "SMS"),
    ("link_title", "通过链接登录", "Sign in with a link"),
    (
        "link_intro",
        "点击下面的按钮即可登录。此链接只能使用一次，发出后 10 分钟内有效。",
        "Press the button below to sign in. This link works once, for 10 minutes after it was sent.",
    ),
    ("link_button", "登录", "Sign in"),
    ("ack_link_title", "确认个案", "Acknowledge a case"),
    ("ack_link_case", "个案编号：", "Case reference:"),
    (
        "ack_link_intro",
        "点击下面的按钮确认您已接手此个案，逐级上报随即停止，然后打开个案页面。",
        "Press the button to acknowledge that you have taken this case: its escalation stops and the case page opens.",
    ),
    ("ack_link_open", "打开个案页面", "Open the case page"),
    (
        "ack_link_sign_in_first",
        "请先登录，登录后回到此页面确认。",
        "Sign in first; you come back to this page to acknowledge.",
    ),
    ("ack_link_sign_in", "登录", "Sign in"),
    (
        "ack_link_invalid",
        "此确认链接无效或已过期。请登录后在个案页面确认。",
        "This acknowledgement link is not valid or has expired. Sign in and acknowledge on the case page.",
    ),
    (
        "link_use_code",
        "改用验证码登录",
        "Sign in with a code instead",
    ),
    (
        "link_invalid",
        "此登录链接无效、已过期或已使用。请重新获取验证码。",
        "This sign-in link is not valid, has expired or was used already. Ask for a new code.",
    ),
    (
        "identifier_label",
        "工号、邮箱或手机号",
        "Staff number, email or phone",
    ),
    ("send_code", "发送验证码", "Send a code"),
    (
        "code_sent",
        "如果该账号存在，验证码已发送到其登记的邮箱或手机，10 分钟内有效，只能使用一次。邮件中的登录链接也可直接使用。",
        "If the account exists, a code was sent to its email or phone. It works once, for 10 minutes. The link in the email works too.",
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
    ("no_action_for", "无处置行动已", "No action for"),
    ("days", "天", "days"),
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
    ("ladder_record", "逐级上报经过", "What the escalation did"),
    ("ladder_told", "已发出的通知：", "Messages sent: "),
    ("ladder_failed", "发送失败：", "Failed: "),
    ("ladder_after", "开案后", "after"),
    (
        "ladder_never_acknowledged",
        "结案前未经确认",
        "Closed without an acknowledgement",
    ),
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
    (
        "not_found_student_text",
        "没有这个学生，或者您无权查看。",
        "There is no such student, or it is not one you may see.",
    ),
    (
        "not_found_other_text",
        "没有找到，或者您无权查看。",
        "Not found, or not something you may see.",
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
    ("channel_voice", "语音电话", "voice call"),
    ("channel_im", "工作消息", "work IM"),
    ("pages_label", "页面", "Pages"),
    ("archive_title", "心理档案", "Student archive"),
    ("archive_link", "查看心理档案", "Open the student's archive"),
    ("archive_counts", "概况", "Summary"),
    ("archive_cases", "个案", "Cases"),
    ("count_reports", "报告", "Reports"),
    ("count_cases", "个案", "Cases"),
    ("count_open_follow_ups", "待随访", "Follow-ups open"),
    ("count_done_follow_ups", "已随访", "Follow-ups done"),
    ("closed_at", "结案时间", "Closed"),
    ("entry_report", "报告", "Report"),
    ("entry_case_opened", "开案", "Case opened"),
    ("entry_case_signal", "信号", "Signal"),
    ("entry_case_action", "处理", "Action"),
    ("entry_follow_up_due", "随访到期", "Follow-up due"),
    ("entry_follow_up_done", "随访完成", "Follow-up done"),
    ("entry_screening", "筛查", "Screening"),
    ("entry_hotline_call", "热线来电", "Hotline call"),
    ("screening_title", "心理筛查导入", "Screening imports"),
    ("sc_upload", "上传筛查结果", "Upload a screening file"),
    (
        "sc_upload_intro",
        "上传测评系统导出的 CSV（UTF-8 或 GBK）或 XLSX 文件，选择量表、作答编码和施测日期。文件的列须与量表相符，否则整个文件不会导入。",
        "Upload the CSV (UTF-8 or GBK) or XLSX file your assessment system exported and choose its instrument, response coding and date. Its columns must fit the instrument, or nothing of it is imported.",
    ),
    ("sc_file", "文件（CSV 或 XLSX）", "File (CSV or XLSX)"),
    ("sc_instrument", "量表", "Instrument"),
    ("sc_coding", "作答编码", "Response coding"),
    (
        "sc_coding_hint",
        "每个量表可用的编码写在量表名后的括号里。",
        "The codings each instrument accepts are in brackets after its name.",
    ),
    ("sc_administered", "施测日期", "Administered on"),
    ("sc_start", "开始导入", "Start the import"),
    ("sc_imports", "导入记录", "Imports"),
    ("sc_import_title", "筛查导入", "Screening import"),
    ("sc_back", "返回导入记录", "Back to the imports"),
    ("sc_created", "上传时间", "Uploaded"),
    ("sc_progress", "进度", "Progress"),
    ("sc_percent", "完成百分比", "Percent done"),
    ("sc_read", "已读取行数", "Rows read"),
    ("sc_accepted", "有效", "Accepted"),
    ("sc_rejected", "无效", "Rejected"),
    ("sc_alerts", "预警", "Alerts raised"),
    ("sc_state_queued", "排队中", "Queued"),
    ("sc_state_running", "导入中", "Running"),
    ("sc_state_done", "已完成", "Done"),
    ("sc_state_failed", "失败", "Failed"),
    ("sc_state_refused", "文件被拒绝", "Refused"),
    (
        "sc_live_note",
        "本页会自动更新进度。",
        "This page follows the import by itself.",
    ),
    ("sc_refresh", "刷新", "Refresh"),
    ("sc_failure", "导入未完成：", "The import did not finish: "),
    ("sc_bands", "各量表分级分布", "Bands per instrument"),
    ("sc_band", "分级", "Band"),
    ("sc_count", "人数", "Students"),
    ("sc_share", "占比", "Share"),
    (
        "sc_banded",
        "有效且有分级的人数：",
        "Accepted rows with a band: ",
    ),
    (
        "sc_no_bands",
        "没有可分级的有效结果（部分量表不按总分分级）。",
        "No accepted result with a band (some instruments are not banded by total).",
    ),
    ("sc_results", "逐行结果", "Results by row"),
    ("sc_row", "行号", "Row"),
    ("sc_student_no", "学号", "Student no."),
    ("sc_outcome", "结果", "Outcome"),
    ("sc_outcome_ok", "有效", "Accepted"),
    ("sc_outcome_reject", "无效", "Rejected"),
    ("sc_total", "总分", "Total"),
    ("sc_flags", "标记", "Flags"),
    ("sc_next_page", "下一页", "Next page"),
    ("sc_first_page", "第一页", "First page"),
    ("sc_row_errors", "行错误", "Row errors"),
    (
        "sc_errors_more",
        "这里最多显示前 200 条，全部错误见 CSV 文件。",
        "At most the first 200 are shown here; the CSV has them all.",
    ),
    (
        "sc_errors_csv",
        "下载全部行错误（CSV）",
        "Download all row errors (CSV)",
    ),
    (
        "sc_counts_only",
        "您的角色只能查看导入进度和统计数字，不能查看分数。",
        "Your role sees the progress and the counts of an import, not its scores.",
    ),
    (
        "sc_refused_file",
        "文件未导入：它与所选量表或编码不符，或无法读取。",
        "The file was not imported: it does not fit the chosen instrument or coding, or cannot be read.",
    ),
    (
        "sc_refused_declaration",
        "未导入：量表、编码或日期有误。",
        "Not imported: the instrument, coding or date is not right.",
    ),
    (
        "sc_refused_too_large",
        "文件太大，无法上传。",
        "The file is too large to upload.",
    ),
    ("band_minimal", "无或极轻", "Minimal"),
    ("band_mild", "轻度", "Mild"),
    ("band_moderate", "中度", "Moderate"),
    ("band_moderately_severe", "中重度", "Moderately severe"),
    ("band_severe", "重度", "Severe"),
    ("band_normal", "正常", "Normal"),
    ("band_borderline", "临界", "Borderline"),
    ("band_abnormal", "异常", "Abnormal"),
    ("band_low", "低", "Low"),
    ("band_high", "高", "High"),
    ("band_very_high", "很高", "Very high"),
    ("flag_suicide_item", "自杀条目阳性", "Suicide item positive"),
    ("flag_suicide_risk", "自杀风险", "Suicide risk"),
    ("flag_screen_positive", "筛查阳性", "Screen positive"),
    ("flag_total_high", "总分偏高", "Total high"),
    ("flag_validity_warning", "效度存疑", "Validity warning"),
    (
        "flag_worse_than_previous",
        "较上次加重",
        "Worse than last time",
    ),
    ("coding_yes1-no0", "是=1，否=0", "yes = 1, no = 0"),
    ("coding_yes1-no2", "是=1，否=2", "yes = 1, no = 2"),
    ("key_population_title", "重点关注", "Key population"),
    ("kp_follow_ups", "随访（个案）", "Follow-ups (cases)"),
    ("kp_watch_list", "关注名单（规则）", "Watch list (rules)"),
    ("kp_overdue", "已逾期", "Overdue"),
    ("kp_open", "待随访数：", "Open follow-ups: "),
    ("kp_look_again", "复查日期", "Look again on"),
    ("kp_since", "列入时间", "Since"),
    ("kp_watch_done", "已跟进（移出名单）", "Followed up (done)"),
    ("done_watch", "已记录跟进。", "The follow-up is recorded."),
    ("me_title", "我的通知", "My notifications"),
    ("me_contacts", "联系方式", "Contact methods"),
    ("me_phone", "手机：", "Mobile:"),
    ("me_email", "邮箱：", "Email:"),
    ("me_verified", "已验证", "Verified"),
    (
        "me_phone_unverified",
        "未验证：用短信验证码登录一次即可验证。只有手机号的同事验证后才会收到预警。",
        "Not verified: sign in once with a code by SMS to verify it. A colleague with only a mobile number is alerted once it is verified.",
    ),
    (
        "me_email_unverified",
        "未验证（用邮件验证码或登录链接登录一次即可验证）",
        "Not verified (sign in once with an emailed code or link to verify it)",
    ),
    (
        "me_contacts_roster",
        "号码或地址有误时请联系学校管理员修改名册；修改后需重新验证。",
        "If a number or address is wrong, ask the school's admin to correct the roster; it is then verified again.",
    ),
    (
        "me_channels",
        "各级别的通知方式",
        "How you are told, per level",
    ),
    (
        "me_channels_intro",
        "已勾选且不可取消的是该级别规定的方式；您可以增加方式，但不能少于规定。",
        "The ticked, fixed ones are what the level requires; you can add channels, never drop below it.",
    ),
    ("me_required", "规定", "required"),
    ("me_channel_sms", "短信", "SMS"),
    ("me_channel_voice", "语音电话", "Voice call"),
    (
        "me_channel_im",
        "工作消息（企业微信/钉钉）",
        "Work IM (WeCom/DingTalk)",
    ),
    ("me_channel_email", "邮件", "Email"),
    ("me_save", "保存", "Save"),
    ("me_saved", "已保存。", "Saved."),
    ("duty_title", "值班表", "Duty roster"),
    (
        "duty_check",
        "通知检查（未来 30 天）",
        "Contacts check (next 30 days)",
    ),
    (
        "duty_check_ok",
        "每一级通知都有人可达，未来 30 天值班无空档。",
        "Every rung reaches someone, and nobody is missing from duty in the next 30 days.",
    ),
    ("duty_gap_soon", "一周内", "Within a week"),
    (
        "duty_gap_nobody",
        "无人值班（预警将通知该角色的所有人）",
        "nobody on duty (alerts go to everyone in the role)",
    ),
    ("duty_rung_first", "首次通知", "First contact"),
    ("duty_rung_n", "升级第", "Rung"),
    (
        "duty_rung_caller",
        "未识别来电者首次通知",
        "Unidentified caller's first contact",
    ),
    ("duty_rung_nobody", "无人可达", "reaches nobody"),
    ("duty_now", "现在值班", "On duty now"),
    ("duty_on_now", "值班：", "On duty:"),
    (
        "duty_nobody_now",
        "现在无人值班：预警将通知该角色的所有人。",
        "Nobody on duty now: alerts go to everyone in the role.",
    ),
    (
        "duty_not_rostered",
        "未排班（预警通知该角色的所有人）",
        "Not rostered (alerts go to everyone in the role)",
    ),
    ("duty_next", "下次交接", "Next change"),
    ("duty_nobody", "无人", "nobody"),
    ("duty_overrides", "临时替班", "Overrides"),
    (
        "duty_overrides_intro",
        "指定某人在一段时间内替该角色值班（如高考周、假期、同事请假），期间优先于轮值。",
        "A named person covers a role from one time to another (exam week, a holiday, a colleague's leave); it wins over the rotations meanwhile.",
    ),
    ("duty_remove", "取消替班", "Remove"),
    ("duty_add", "添加替班", "Add an override"),
    ("duty_who", "替班人员", "Who covers"),
    ("duty_from", "开始时间", "From"),
    ("duty_to", "结束时间", "To"),
    ("duty_rotations", "轮值", "Rotations"),
    ("duty_cadence_daily", "每日轮换", "Daily"),
    ("duty_cadence_weekly", "每周轮换", "Weekly"),
    ("duty_handover", "交接", "hand-over"),
    ("duty_shift", "班次", "shift"),
    ("duty_days_every", "每天", "every day"),
    ("duty_days_school_days", "上学日", "school days"),
    ("duty_days_key_dates", "关键日期", "key dates"),
    ("duty_members", "顺序：", "In turn:"),
    (
        "duty_rotations_api",
        "轮值通过接口设置：POST /v1/duty/rotations（见接口文档）。",
        "Rotations are set up through the API: POST /v1/duty/rotations (see the API docs).",
    ),
    ("duty_time_zone", "时区：", "Time zone:"),
    ("duty_done_added", "已添加替班。", "The override is added."),
    (
        "duty_done_removed",
        "已取消替班。",
        "The override is removed.",
    ),
    ("dead_letters_title", "待复核消息", "Dead letters (review)"),
    (
        "dead_letters_intro",
        "系统未能处理的消息（例如名册中没有的学生）。处理后（例如补录名册并重新提交）标记为已处理。",
        "Messages the services could not handle (e.g. a student missing from the roster). Mark one resolved once dealt with (e.g. the roster fixed and the report sent again).",
    ),
    ("dl_received", "收到时间", "Received"),
    ("dl_deliveries", "投递次数：", "Deliveries: "),
    ("dl_resolve", "标记为已处理", "Mark resolved"),
    (
        "dl_detail",
        "详情（原因与编号）",
        "Details (reason and ids)",
    ),
    (
        "dl_kind_screening",
        "筛查自杀预警：学号不在名册中",
        "Screening suicide alert: student number not on the roster",
    ),
    (
        "dl_kind_signal",
        "未能处理的预警信号",
        "A warning signal that could not be handled",
    ),
    (
        "dl_kind_case",
        "个案逐级上报告警",
        "An alarm about a case's escalation",
    ),
    (
        "dl_kind_notify",
        "未能发送的通知",
        "A notification that could not be sent",
    ),
    (
        "dl_kind_zero_report",
        "未能处理的零报告",
        "A zero report that could not be handled",
    ),
    (
        "dl_kind_timer",
        "未能执行的定时任务",
        "A timer that could not run",
    ),
    (
        "dl_kind_other",
        "系统未能处理的消息",
        "A message the services could not handle",
    ),
    ("done_resolved", "已标记为已处理。", "Marked resolved."),
    ("field_at_fault", "请检查：", "Check: "),
    ("work_title", "处理", "Work on this case"),
    (
        "take_case",
        "接手此个案（分配给我）",
        "Take this case (assign to me)",
    ),
    ("save", "保存", "Save"),
    ("act_note", "添加记录", "Add a note"),
    (
        "note_label",
        "记录内容（加密保存）",
        "Note (stored encrypted)",
    ),
    ("act_assign", "分配负责人", "Assign"),
    ("assign_to", "分配给", "Assign to"),
    ("act_contact", "联系监护人", "Guardian contact"),
    ("guardian", "监护人", "Guardian"),
    ("contact_outcome", "联系结果", "Outcome"),
    ("contact_channel_phone", "电话", "Phone"),
    ("contact_channel_in_person", "当面", "In person"),
    ("contact_channel_sms", "短信", "SMS"),
    ("contact_channel_message", "微信/消息", "Message"),
    ("contact_channel_other", "其他", "Other"),
    (
        "contact_outcome_reached",
        "已联系并告知",
        "Reached and informed",
    ),
    ("contact_outcome_no_answer", "无人接听", "No answer"),
    ("contact_outcome_declined", "拒绝配合", "Declined"),
    (
        "contact_outcome_meeting_agreed",
        "约定面谈",
        "Meeting agreed",
    ),
    (
        "no_guardians",
        "没有登记的监护人。",
        "No guardian is registered.",
    ),
    (
        "no_contact_reason",
        "决定不联系监护人的原因（例如风险来自家庭）",
        "Why the guardians are not contacted (e.g. risk from home)",
    ),
    (
        "record_no_contact",
        "记录不联系的决定",
        "Record the decision not to contact",
    ),
    ("act_referral", "转介", "Refer"),
    (
        "act_referral_update",
        "更新转介（回执、复学评估）",
        "Update (receipt, return assessment)",
    ),
    ("referrals", "转介", "Referrals"),
    ("institution", "转介机构", "Institution"),
    ("referred_on", "转介日期", "Referred on"),
    ("receipt_confirmed", "已收到回执", "Receipt confirmed"),
    ("receipt_pending", "未收到回执", "No receipt yet"),
    (
        "return_assessed_on",
        "复学评估日期",
        "Return assessment date",
    ),
    ("return_assessment", "复学评估", "Return assessment"),
    ("act_follow_up", "安排随访", "Plan a follow-up"),
    ("follow_up_outcome", "随访结果", "What the follow-up found"),
    ("mark_done", "标记为已完成", "Mark done"),
    ("act_level", "调整风险等级", "Change the level"),
    ("new_level", "新的风险等级", "New level"),
    ("reason", "原因", "Reason"),
    ("act_close", "结案", "Close the case"),
    ("close_outcome", "结案结果", "Outcome"),
    ("close_outcome_resolved", "危机已解除", "Resolved"),
    ("close_outcome_referred_out", "已转出校外", "Referred out"),
    ("close_outcome_transferred", "已转学", "Transferred"),
    ("close_outcome_left_school", "已离校", "Left school"),
    ("close_summary", "结案小结（可选）", "Summary (optional)"),
    ("act_reopen", "重新开案", "Reopen"),
    (
        "act_link_student",
        "关联学生（来电者身份已确认）",
        "Link the caller to a student",
    ),
    ("done_assign", "已分配。", "Assigned."),
    ("done_note", "记录已保存。", "The note is saved."),
    (
        "done_guardian_contact",
        "监护人联系已记录。",
        "The guardian contact is recorded.",
    ),
    (
        "done_no_contact",
        "不联系的决定已记录。",
        "The decision not to contact is recorded.",
    ),
    ("done_referral", "转介已记录。", "The referral is recorded."),
    (
        "done_referral_update",
        "转介已更新。",
        "The referral is updated.",
    ),
    (
        "done_follow_up",
        "随访已安排。",
        "The follow-up is planned.",
    ),
    (
        "done_follow_up_done",
        "随访已完成。",
        "The follow-up is done.",
    ),
    ("done_level", "风险等级已调整。", "The level is changed."),
    ("done_close", "已结案。", "The case is closed."),
    (
        "done_reopen",
        "已重新开案，逐级上报重新开始。",
        "Reopened: the escalation runs again.",
    ),
    (
        "done_link_student",
        "已关联学生。",
        "The caller is linked to the student.",
    ),
    (
        "refused_not_taken",
        "无法操作：请先确认接手此个案。",
        "Not possible: acknowledge the case first.",
    ),
    (
        "refused_closed",
        "无法操作：此个案已结案，需先重新开案。",
        "Not possible: the case is closed; reopen it first.",
    ),
    (
        "refused_unidentified",
        "无法操作：来电者身份未识别，请先关联学生。",
        "Not possible: the caller is not identified; link a student first.",
    ),
    (
        "refused_other_case",
        "无法操作：该学生另有未结个案，请处理那个个案。",
        "Not possible: the student has another open case; work that one.",
    ),
    (
        "refused_conflict",
        "无法操作：个案当前的状态不允许此操作。",
        "Not possible in the case's current state.",
    ),
    (
        "refused_invalid",
        "填写有误，请检查后重试。",
        "Something in the form is not right; check it and try again.",
    ),
    (
        "refused_forbidden",
        "您的角色不能对此个案进行此操作（例如个案已分配给他人）。",
        "Your role may not do this to this case (for example, it is assigned to someone else).",
    ),
    (
        "refused_no_such",
        "没有找到所选的对象。",
        "What you chose was not found.",
    ),
    ("action_acknowledge", "确认接手", "Acknowledged"),
    ("action_assign", "分配", "Assigned"),
    ("action_note", "记录", "Note"),
    ("action_guardian_contact", "联系监护人", "Guardian contact"),
    ("action_referral", "转介", "Referral"),
    ("action_referral_update", "转介更新", "Referral update"),
    ("action_follow_up", "随访", "Follow-up"),
    ("action_work", "处理工作", "Case work"),
    ("action_follow_up_done", "随访完成", "Follow-up done"),
    ("action_level", "调整等级", "Level changed"),
    ("action_close", "结案", "Closed"),
    ("action_reopen", "重新开案", "Reopened"),
    ("action_link_student", "关联学生", "Linked to a student"),
    ("calls_title", "热线来电", "Hotline calls"),
    (
        "calls_unidentified_only",
        "只看身份未识别的来电",
        "Unidentified callers only",
    ),
    ("calls_since", "起始日期", "Since"),
    ("calls_filter", "筛选", "Filter"),
    ("calls_none", "没有符合条件的来电。", "No calls match."),
    ("calls_pages", "翻页", "Pages of calls"),
    ("calls_newest", "最新的来电", "Newest calls"),
    ("calls_older", "更早的来电", "Older calls"),
    ("call_title", "来电", "Call"),
    ("back_to_calls", "返回来电列表", "Back to the calls"),
    ("call_started", "来电时间", "Started"),
    ("call_ended", "结束时间", "Ended"),
    ("caller_type", "来电者", "Caller"),
    ("caller_student", "学生本人", "The student"),
    ("caller_guardian", "监护人", "A guardian"),
    ("caller_teacher", "教师", "A teacher"),
    ("caller_anonymous", "匿名", "Anonymous"),
    ("call_identified", "已识别学生", "Student identified"),
    ("call_unidentified", "身份未识别", "Not identified"),
    ("call_case", "相关个案", "Case"),
    ("call_open_case", "查看个案", "Open the case"),
    ("call_no_case", "未开案", "No case"),
    ("call_rating", "热线评级", "Hotline rating"),
    ("call_linked_at", "关联学生时间", "Linked to a student"),
    ("call_id_label", "热线系统编号", "Hotline's call id"),
    ("call_record", "通话记录", "Call record"),
    (
        "call_sealed_note",
        "以下内容加密保存，仅心理教师和危机干预小组可见；每次查看都会记录。",
        "Stored encrypted, for counsellors and the crisis team only; every opening is recorded.",
    ),
    ("call_summary", "通话摘要", "Summary"),
    ("call_counsellor", "接线咨询员", "Hotline counsellor"),
    ("call_referral_advice", "转介建议", "Referral advice"),
    (
        "cssrs_recent",
        "近 3 个月内的行为：",
        "Behaviour within 3 months: ",
    ),
    ("yes", "是", "yes"),
    ("no", "否", "no"),
    (
        "done_call_link",
        "已关联学生，来电已作为该学生的信号处理。",
        "Linked: the call is now the student's signal.",
    ),
    (
        "refused_call_linked",
        "无法操作：此来电已关联学生。",
        "Not possible: this call is about a student already.",
    ),
    (
        "refused_call_opening",
        "来电者的个案正在开立，请稍后再试。",
        "The caller's case is still opening; try again in a moment.",
    ),
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
