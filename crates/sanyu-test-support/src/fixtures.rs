//! A seeded school: two classes, students, staff in every role, and a token
//! for each role.

use sanyu_domain::Role;
use sanyu_store::Db;
use sanyu_store::roster::{self, ImportScope};
use sanyu_store::tokens::{self, TokenRequest};

/// A school with tokens. Class `C1` has students `S1`, `S2`; class `C2` has `S3`.
#[derive(Debug, Clone)]
pub struct School {
    pub code: String,
    pub counsellor_email: String,
    pub teacher_c1: String,
    pub teacher_c2: String,
    pub monitor_c1: String,
    /// Counsellor K1 (has an email address: notified).
    pub counsellor: String,
    /// Counsellor K2 (no email address: never notified; for assignment tests).
    pub counsellor2: String,
    pub crisis_team: String,
    pub leader: String,
    pub admin: String,
    pub district: String,
    pub service: String,
}

pub fn students_csv(code: &str) -> String {
    format!(
        "school_code,school_name,grade_code,grade_name,class_code,class_name,student_no,student_name,gender,guardian_name,guardian_relation,guardian_phone,guardian_email\n\
         {code},Test School {code},G1,Grade 1,C1,Class 1,S1,Student One,F,Parent One,mother,13800000001,\n\
         {code},Test School {code},G1,Grade 1,C1,Class 1,S2,Student Two,M,Parent Two,father,13800000002,\n\
         {code},Test School {code},G1,Grade 1,C2,Class 2,S3,Student Three,F,Parent Three,mother,13800000003,\n"
    )
}

pub fn staff_csv(code: &str) -> String {
    let lc = code.to_lowercase();
    format!(
        "school_code,staff_no,name,role,class_code,phone,email\n\
         {code},T1,Teacher One,teacher,C1,13900000001,t1@{lc}.test\n\
         {code},T2,Teacher Two,teacher,C2,13900000002,t2@{lc}.test\n\
         {code},M1,Monitor One,monitor,C1,,\n\
         {code},K1,Counsellor One,counsellor,,13900000003,counsellor@{lc}.test\n\
         {code},K2,Counsellor Two,counsellor,,13900000007,\n\
         {code},X1,Crisis Lead,crisis_team,,13900000004,crisis@{lc}.test\n\
         {code},L1,Leader One,leader,,13900000005,leader@{lc}.test\n\
         {code},A1,Admin One,admin,,13900000006,admin@{lc}.test\n"
    )
}

async fn token(db: &Db, role: Role, code: &str, class: Option<&str>) -> String {
    staff_token(db, role, code, class, None).await
}

/// A token that names the staff member `staff_no` (needed to act on cases).
pub async fn staff_token(
    db: &Db,
    role: Role,
    code: &str,
    class: Option<&str>,
    staff_no: Option<&str>,
) -> String {
    tokens::issue(
        db,
        TokenRequest {
            role,
            school_code: code.to_owned(),
            class_code: class.map(str::to_owned),
            staff_no: staff_no.map(str::to_owned),
            label: Some("test".into()),
            ttl: chrono::Duration::days(1),
        },
    )
    .await
    .expect("issue token")
    .secret
}

/// Import the roster of school `code` and issue a token per role.
pub async fn seed_school(db: &Db, code: &str) -> School {
    let txn = sanyu_store::begin_write(db).await.expect("begin");
    let s = roster::import_students(&*txn, students_csv(code).as_bytes(), ImportScope::Operator)
        .await
        .expect("import students");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let s = roster::import_staff(&*txn, staff_csv(code).as_bytes(), ImportScope::Operator)
        .await
        .expect("import staff");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    txn.commit().await.expect("commit");
    School {
        code: code.to_owned(),
        counsellor_email: format!("counsellor@{}.test", code.to_lowercase()),
        teacher_c1: staff_token(db, Role::Teacher, code, Some("C1"), Some("T1")).await,
        teacher_c2: staff_token(db, Role::Teacher, code, Some("C2"), Some("T2")).await,
        monitor_c1: staff_token(db, Role::Monitor, code, Some("C1"), Some("M1")).await,
        counsellor: staff_token(db, Role::Counsellor, code, None, Some("K1")).await,
        counsellor2: staff_token(db, Role::Counsellor, code, None, Some("K2")).await,
        crisis_team: staff_token(db, Role::CrisisTeam, code, None, Some("X1")).await,
        leader: staff_token(db, Role::Leader, code, None, Some("L1")).await,
        admin: token(db, Role::Admin, code, None).await,
        district: token(db, Role::District, code, None).await,
        service: token(db, Role::Service, code, None).await,
    }
}

/// Add `n` students `B00000`… to class C1 of school `code` (for benchmarks).
pub async fn add_students(db: &Db, code: &str, n: usize) {
    let mut csv = String::from("school_code,grade_code,class_code,student_no,student_name\n");
    for i in 0..n {
        csv.push_str(&format!("{code},G1,C1,B{i:05},Bench Student {i}\n"));
    }
    let txn = sanyu_store::begin_write(db).await.expect("begin");
    let s = roster::import_students(&*txn, csv.as_bytes(), ImportScope::Operator)
        .await
        .expect("import students");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    txn.commit().await.expect("commit");
}
