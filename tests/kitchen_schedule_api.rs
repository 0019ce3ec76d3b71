//! `PUT /api/units/schedule` through a real ingest (SQLite, port 0, virtual time): only
//! the register keepers of the unit's grid set a kitchen's calendar, a wall hides units
//! outside the caller's grids, and the engine judges the unit's sterilizers by it.
use gridwatch_alerts::KitchenSchedule;
use gridwatch_cases::{Assignment, GridScope, Role, User};
use gridwatch_ingest::{IngestConfig, Users};
use gridwatch_protocol::clock::ManualClock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// 2026-11-25 10:00 China time.
const NOW: u64 = 1_795_572_000_000;

const CSV: &str = "设备类别,设备品种,设备注册代码,内部编号,制造单位,投用日期,使用单位,使用单位地址,使用单位联系电话,网格编码,维保单位编码,维保单位,维保周期(天),上次维保日期,下次检验日期,设备状态\n\
餐具消毒设备,商用洗碗机,XD-CANTEEN,1号,康宝,2025-11-01,城关小学食堂,大佛路1号,0575-1,010101,,,,,,在用\n\
餐具消毒设备,红外线消毒柜,XD-OTHER,1号,康宝,2025-11-01,外区饭店,二区路1号,0575-2,020101,,,,,,在用\n";

fn grid_user(id: &str, role: Role, scope: &str) -> User {
    User {
        id: id.into(),
        name: id.into(),
        assignments: vec![Assignment::Grid {
            role,
            scope: GridScope::parse(scope).unwrap(),
        }],
    }
}

async fn put(http: &reqwest::Client, base: &str, token: &str, body: Value) -> (StatusCode, Value) {
    let resp = http
        .put(format!("{base}/api/units/schedule"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_units_grid_sets_its_kitchen_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = IngestConfig::embedded(dir.path());
    config.clock = Arc::new(ManualClock::new(NOW));
    config.tick_every = Duration::from_secs(3600);
    let mut users = Users::new();
    users.add("t-admin", grid_user("admin", Role::GridAdministrator, "0101"));
    users.add("t-officer", grid_user("officer", Role::InformationOfficer, "0101"));
    users.add("t-head02", grid_user("head02", Role::GridHead, "02"));
    config.users = users;
    let ingest = gridwatch_ingest::start(config).await.unwrap();
    ingest.import_register_csv(CSV.as_bytes()).await.unwrap();
    let (http, base) = (reqwest::Client::new(), format!("http://{}", ingest.http_addr));

    let canteen = json!({"name": "城关小学食堂", "address": "大佛路1号"});
    let closed_sundays = json!({"operating_days": [1, 2, 3, 4, 5, 6]});
    let body = json!({"unit": canteen, "schedule": closed_sundays});
    let (status, reply) = put(&http, &base, "t-officer", body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{reply}");
    let (status, reply) = put(&http, &base, "t-head02", body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "behind the wall: {reply}");
    let bad = json!({"unit": canteen, "schedule": {"operating_days": [0]}});
    let (status, reply) = put(&http, &base, "t-admin", bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("operating_days"), "{reply}");

    let (status, reply) = put(&http, &base, "t-admin", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["unit"]["schedule"], closed_sundays);
    assert_eq!(reply["sterilizers"], json!(["XD-CANTEEN"]));
    let expected = KitchenSchedule {
        operating_days: Some(vec![1, 2, 3, 4, 5, 6]),
        ..KitchenSchedule::default()
    };
    {
        let domain = ingest.domain().lock().await;
        assert_eq!(domain.engine().kitchen_schedule("XD-CANTEEN"), Some(&expected));
        assert_eq!(domain.engine().kitchen_schedule("XD-OTHER"), None);
    }
    // Back to the global schedule.
    let (status, reply) = put(&http, &base, "t-admin", json!({"unit": canteen, "schedule": null})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["unit"].get("schedule"), None);
    assert_eq!(
        ingest.domain().lock().await.engine().kitchen_schedule("XD-CANTEEN"),
        None
    );
    ingest.stop().await;
}
