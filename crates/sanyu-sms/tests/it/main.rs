//! The tests of `sanyu-sms`: one test binary, a module per subject.

mod aliyun;
mod common;
mod config;
mod template_privacy;
mod tencent;
mod webhook;
