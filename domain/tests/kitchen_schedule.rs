//! A using unit's kitchen schedule reaches the alert engine when the register is
//! imported or changed, and again after a restart (it is saved with the register);
//! config files with non-finite thresholds are refused naming the field.
use gridwatch_alerts::{ClockTime, KitchenSchedule};
use gridwatch_cases::{Assignment, GridScope, Role, UnitKey, User};
use gridwatch_domain::{DomainConfig, import_register, load};
use gridwatch_storage::Store;
use std::path::PathBuf;

/// 2026-11-25 12:00 China time.
const NOW: u64 = 1_795_536_000_000 + 12 * 3_600_000;

const CSV: &str = "设备类别,设备品种,设备注册代码,内部编号,制造单位,投用日期,使用单位,使用单位地址,使用单位联系电话,网格编码,维保单位编码,维保单位,维保周期(天),上次维保日期,下次检验日期,设备状态,营业日\n\
餐具消毒设备,商用洗碗机,XD-CANTEEN,1号,康宝,2025-11-01,城关小学食堂,大佛路1号,0575-1,010101,,,,,,在用,1-6\n\
餐具消毒设备,商用洗碗机,XD-RESTAURANT,1号,康宝,2025-11-01,天姥快餐店,大佛路247号,0575-2,010101,,,,,,在用,\n";

fn temp_db(name: &str) -> (PathBuf, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("gridwatch-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("gridwatch.db").display());
    (dir, url)
}

fn admin() -> User {
    User {
        id: "admin".into(),
        name: "admin".into(),
        assignments: vec![Assignment::Grid {
            role: Role::GridAdministrator,
            scope: GridScope::parse("0101").unwrap(),
        }],
    }
}

#[tokio::test]
async fn site_schedules_reach_the_engine_and_survive_a_restart() {
    let (dir, url) = temp_db("schedule");
    let closed_sundays = KitchenSchedule {
        operating_days: Some(vec![1, 2, 3, 4, 5, 6]),
        ..KitchenSchedule::default()
    };
    {
        let store = Store::open(&url).await.unwrap();
        let alerting = load(&store, DomainConfig::default()).await.unwrap();
        import_register(&alerting, CSV.as_bytes(), NOW).await.unwrap();
        let domain = alerting.domain.lock().await;
        assert_eq!(domain.engine().kitchen_schedule("XD-CANTEEN"), Some(&closed_sundays));
        assert_eq!(domain.engine().kitchen_schedule("XD-RESTAURANT"), None);
    }
    let lunch_only = KitchenSchedule {
        meal_periods: Some(vec![gridwatch_alerts::config::MealPeriod {
            name: "lunch".into(),
            start: ClockTime::hm(11, 0),
            end: ClockTime::hm(14, 0),
        }]),
        ..KitchenSchedule::default()
    };
    let restaurant = UnitKey {
        name: "天姥快餐店".into(),
        address: "大佛路247号".into(),
    };
    {
        let store = Store::open(&url).await.unwrap();
        let alerting = load(&store, DomainConfig::default()).await.unwrap();
        let mut domain = alerting.domain.lock().await;
        assert_eq!(
            domain.engine().kitchen_schedule("XD-CANTEEN"),
            Some(&closed_sundays),
            "the imported schedule after a restart"
        );
        let firm = User {
            id: "firm".into(),
            name: "firm".into(),
            assignments: vec![Assignment::Firm { firm: "MF01".into() }],
        };
        assert!(
            domain
                .set_kitchen_schedule(&firm, &restaurant, Some(lunch_only.clone()))
                .is_err()
        );
        let fx = domain
            .set_kitchen_schedule(&admin(), &restaurant, Some(lunch_only.clone()))
            .unwrap();
        assert!(fx.register_changed);
        assert_eq!(domain.engine().kitchen_schedule("XD-RESTAURANT"), Some(&lunch_only));
        alerting.save(&mut domain, fx).await;
    }
    let store = Store::open(&url).await.unwrap();
    let alerting = load(&store, DomainConfig::default()).await.unwrap();
    let domain = alerting.domain.lock().await;
    assert_eq!(domain.engine().kitchen_schedule("XD-RESTAURANT"), Some(&lunch_only));
    assert_eq!(domain.engine().kitchen_schedule("XD-CANTEEN"), Some(&closed_sundays));
    drop(domain);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_files_with_non_finite_numbers_are_refused_naming_the_field() {
    let (dir, _) = temp_db("config");
    let path = dir.join("gridwatch.toml");
    let cases = [
        (
            "[register]\nmax_unconfirmed_removal_share = nan\n",
            "max_unconfirmed_removal_share",
        ),
        (
            "[register]\nmax_unconfirmed_removal_share = -inf\n",
            "max_unconfirmed_removal_share",
        ),
        (
            "[alerts.sterilizer]\ndishwasher = { min_temp_c = inf, min_hold_s = 40 }\n",
            "min_temp_c",
        ),
    ];
    for (text, field) in cases {
        std::fs::write(&path, text).unwrap();
        let err = DomainConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(&format!("field {field}: expected a finite number")),
            "{text}: {err}"
        );
    }
    std::fs::write(&path, "[register]\nmax_unconfirmed_removal_share = 0.5\n").unwrap();
    let cfg = DomainConfig::load(&path).unwrap();
    assert_eq!(cfg.register.max_unconfirmed_removal_share, 0.5);
    std::fs::remove_dir_all(dir).ok();
}
