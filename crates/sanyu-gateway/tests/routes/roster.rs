//! The roster API (moved from the end-to-end `tests/roster_and_tokens.rs`,
//! same assertions): an admin imports rows of the own school only.

use sanyu_store::entities::staff;
use sanyu_store::sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use sanyu_test_support::TestDb;
use serde_json::Value;

use crate::support::{App, Sch, Who};

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_imports_the_roster_of_the_own_school_through_the_api() {
    let app = App::start(TestDb::sqlite()).await;
    let csv = "school_code,staff_no,name,role,class_code,phone,email\n\
               SCH1,K9,Another Counsellor,counsellor,,13900000009,k9@sch1.test\n\
               SCH2,K3,Wrong School,counsellor,,,\n\
               SCH1,T9,No Class Teacher,teacher,,,\n";
    let r = app
        .as_(Who::Admin, Sch::A)
        .post_csv("/v1/roster/staff", csv)
        .await;
    assert_eq!(r.status(), 200);
    let summary: Value = r.json();
    assert_eq!(summary["created"], 1);
    assert_eq!(summary["errors"][0]["line"], 3);
    assert_eq!(summary["errors"][0]["field"], "school_code");
    assert_eq!(summary["errors"][1]["line"], 4);
    assert_eq!(summary["errors"][1]["field"], "class_code");
    let other = staff::Entity::find()
        .filter(staff::Column::StaffNo.eq("K3"))
        .count(&app.db)
        .await
        .expect("count");
    assert_eq!(other, 0, "a row of another school is never imported");
}
