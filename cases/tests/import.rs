//! The register import on the county sample and on crafted bad rows.
use gridwatch_alerts::Date;
use gridwatch_alerts::config::DueConfig;
use gridwatch_cases::import::COLUMNS;
use gridwatch_cases::stats::devices_due_by_grid;
use gridwatch_cases::*;
use gridwatch_protocol::DeviceKind;
use std::path::PathBuf;

/// The project's copy of the synthetic county register (`simulators/data/`).
fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../simulators/data/registry-sample.csv")
}

fn sample() -> Vec<u8> {
    let path = sample_path();
    std::fs::read(&path).unwrap_or_else(|e| panic!("the register sample {} is missing: {e}", path.display()))
}

const HEADER: &str = "设备类别,设备品种,设备注册代码,内部编号,制造单位,投用日期,使用单位,使用单位地址,使用单位联系电话,网格编码,维保单位编码,维保单位,维保周期(天),上次维保日期,下次检验日期,设备状态";
const GOOD_LIFT: &str = "电梯,曳引驱动乘客电梯,31103306242009000001,1#梯,西子,2009-05-20,鼓山商场,江滨路19号,0575-00009538,010101,MF04,示例丁机电设备维修部,15,2026-11-13,2027-01-22,在用";
const GOOD_STERILIZER: &str =
    "餐具消毒设备,商用洗碗机,XD330624000008,1号,康宝,2025-11-01,天姥快餐店,大佛路247号,0575-00001972,010101,,,,,,在用";

fn parse(rows: &[&str]) -> ParsedRegister {
    let text = std::iter::once(HEADER)
        .chain(rows.iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    parse_register(text.as_bytes())
}

/// (line, column, expected-contains) of each error.
fn errors(p: &ParsedRegister) -> Vec<(u64, String)> {
    p.errors.iter().map(|e| (e.line, e.column.clone())).collect()
}

#[test]
fn imports_all_362_devices_of_the_county_sample() {
    let registry = import_register(sample().as_slice()).unwrap_or_else(|errors| {
        panic!(
            "{}",
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
        );
    });
    assert_eq!(registry.devices().count(), 362);
    assert_eq!(registry.devices().filter(|d| d.kind == DeviceKind::Lift).count(), 278);
    assert_eq!(
        registry.devices().filter(|d| d.kind == DeviceKind::Sterilizer).count(),
        84
    );
    assert_eq!(
        registry
            .devices()
            .filter(|d| d.status == DeviceStatus::OutOfService)
            .count(),
        8
    );
    // Names repeat: a using unit is its name and address together.
    assert_eq!(registry.units().count(), 171);
    assert_eq!(registry.firms().count(), 4);
    let grids: std::collections::BTreeSet<_> = registry.units().map(|u| u.grid).collect();
    assert_eq!(grids.len(), 24);

    let lift = registry.device("31103306242009000001").unwrap();
    assert_eq!(lift.equipment_type, EquipmentType::TractionPassengerLift);
    assert_eq!(lift.label, "1#梯");
    assert_eq!(lift.firm.as_deref(), Some("MF04"));
    assert_eq!(lift.next_inspection_due, Some(Date::constant(2027, 1, 22)));
    assert_eq!(registry.grid_of(lift), GridCode::parse("010101").unwrap());
    let sterilizer = registry.device("XD330624000008").unwrap();
    assert_eq!(
        (sterilizer.firm.as_ref(), sterilizer.maintenance_interval_days),
        (None, None)
    );
    assert_eq!(
        sterilizer.equipment_type.method(),
        Some(gridwatch_protocol::Method::Dishwasher)
    );

    // As of the sample's date: 10 lifts past inspection, 19 due within 30 days, 53 past maintenance.
    let rows = devices_due_by_grid(&registry, Date::constant(2026, 11, 25), &DueConfig::default());
    assert_eq!(rows.len(), 24);
    let sum = |f: fn(&stats::GridDueRow) -> u64| rows.iter().map(f).sum::<u64>();
    assert_eq!(sum(|r| r.devices), 354);
    assert_eq!(sum(|r| r.inspection_overdue), 10);
    assert_eq!(sum(|r| r.inspection_due_soon), 19);
    assert_eq!(sum(|r| r.maintenance_overdue), 53);
}

use gridwatch_cases::stats;

#[test]
fn good_rows_read_with_a_bom_in_any_column_order_and_extra_columns() {
    let p = parse(&[GOOD_LIFT, GOOD_STERILIZER, ""]);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.devices, 2);
    // Reversed columns, an extra one, a BOM, CRLF line ends and slashes in dates.
    let mut header: Vec<&str> = COLUMNS.to_vec();
    header.reverse();
    let mut fields: Vec<&str> = GOOD_LIFT.split(',').collect();
    fields.reverse();
    let row = fields.join(",").replace("2026-11-13", "2026/11/13");
    let text = format!("\u{feff}{},备注\r\n{row},新装\r\n", header.join(","));
    let registry = import_register(text.as_bytes()).unwrap();
    let lift = registry.device("31103306242009000001").unwrap();
    assert_eq!(lift.last_maintenance, Some(Date::constant(2026, 11, 13)));
}

#[test]
fn bad_rows_name_line_column_and_what_was_expected() {
    let bad_grid = GOOD_LIFT.replace(",010101,", ",01011,");
    let bad_class = GOOD_LIFT.replace("电梯,曳引", "扶梯,曳引");
    let wrong_type = GOOD_STERILIZER.replace("商用洗碗机", "自动扶梯");
    let bad_date = GOOD_LIFT.replace("2027-01-22", "2027-02-30");
    let no_firm = GOOD_LIFT.replace("MF04,示例丁机电设备维修部", ",");
    let bad_status = GOOD_LIFT.replace("在用", "报废");
    let short_code = GOOD_LIFT.replace("31103306242009000001", "3110330624");
    let p = parse(&[
        &bad_grid,
        &bad_class,
        &wrong_type,
        &bad_date,
        &no_firm,
        &bad_status,
        &short_code,
        GOOD_STERILIZER,
    ]);
    assert_eq!(
        errors(&p),
        [
            (2, "网格编码".to_string()),
            (3, "设备类别".to_string()),
            (4, "设备品种".to_string()),
            (5, "下次检验日期".to_string()),
            (6, "维保单位编码".to_string()),
            (7, "设备状态".to_string()),
            (8, "设备注册代码".to_string()),
        ]
    );
    assert_eq!(p.devices, 1, "the good row is still read");
    let text: Vec<String> = p.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        text[0],
        "line 2, column 网格编码: expected 6 digits (area, unit and grid, two each), found \"01011\""
    );
    assert_eq!(
        text[1],
        "line 3, column 设备类别: expected 电梯 or 餐具消毒设备, found \"扶梯\""
    );
    assert_eq!(
        text[2],
        "line 4, column 设备品种: expected a type of 餐具消毒设备: 红外线消毒柜, 蒸汽消毒柜, 商用洗碗机, found \"自动扶梯\""
    );
    assert_eq!(
        text[3],
        "line 5, column 下次检验日期: expected a date YYYY-MM-DD (or YYYY/M/D), found \"2027-02-30\""
    );
    assert!(text[4].contains("required for lifts"));
    assert_eq!(
        text[5],
        "line 7, column 设备状态: expected 在用 (in use) or 停用 (out of service), found \"报废\""
    );
    assert!(text[6].contains("20 digits for a lift"));
    assert!(import_register(format!("{HEADER}\n{bad_grid}").as_bytes()).is_err());
}

#[test]
fn rows_that_contradict_earlier_rows_are_refused() {
    let same_code = GOOD_LIFT.replace("1#梯", "2#梯");
    let other_grid = GOOD_LIFT
        .replace("31103306242009000001", "31103306242009000002")
        .replace(",010101,", ",010102,");
    let other_firm_name = GOOD_LIFT
        .replace("31103306242009000001", "31103306242009000003")
        .replace("示例丁", "示例戊");
    let p = parse(&[GOOD_LIFT, &same_code, &other_grid, &other_firm_name]);
    assert_eq!(
        errors(&p),
        [
            (3, "设备注册代码".into()),
            (4, "网格编码".into()),
            (5, "维保单位".into())
        ]
    );
    assert!(p.errors[0].expected.contains("line 2"));
    assert_eq!(p.errors[1].expected, "010101 as on line 2 for the same using unit");
    // The same unit name at another address is another unit.
    let elsewhere = GOOD_LIFT
        .replace("31103306242009000001", "31103306242009000004")
        .replace("江滨路19号", "江滨路20号")
        .replace(",010101,", ",010102,");
    assert!(parse(&[GOOD_LIFT, &elsewhere]).errors.is_empty());
}

#[test]
fn missing_headers_and_short_rows_are_reported() {
    let p = parse_register("设备类别,设备品种\n电梯,自动扶梯\n".as_bytes());
    assert_eq!(p.errors.len(), 14);
    assert!(
        p.errors
            .iter()
            .all(|e| e.line == 1 && e.expected.starts_with("a header named"))
    );
    let p = parse(&["电梯,曳引驱动乘客电梯,31103306242009000001"]);
    assert_eq!(errors(&p), [(2, String::new())]);
    assert!(p.errors[0].expected.contains("as many fields as the header"));
}

#[test]
fn a_units_kitchen_schedule_round_trips_through_the_csv_and_the_saved_register() {
    let header = format!("{HEADER},营业日,供餐时段,营业时间");
    let canteen = GOOD_STERILIZER.replace("天姥快餐店", "城关小学食堂");
    let rows = [
        format!("{canteen},1-5,午餐 11:00-13:00,07:00-14:00"),
        // A second row of the same unit may leave the cells empty: it takes the unit's.
        format!("{},,,", canteen.replace("XD330624000008", "XD330624000009")),
        format!("{},,,", GOOD_STERILIZER.replace("XD330624000008", "XD330624000010")),
        format!("{GOOD_LIFT},,,"),
    ];
    let text = std::iter::once(header.clone())
        .chain(rows.iter().cloned())
        .collect::<Vec<_>>()
        .join("\n");
    let registry = import_register(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    let schedules: Vec<_> = registry.kitchen_schedules().collect();
    assert_eq!(
        schedules.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        ["XD330624000008", "XD330624000009"],
        "the restaurant keeps the global schedule"
    );
    let schedule = schedules[0].1.clone();
    assert_eq!(schedule.operating_days, Some(vec![1, 2, 3, 4, 5]));
    assert_eq!(
        import::schedule_cells(&schedule),
        ["1,2,3,4,5", "午餐 11:00-13:00", "07:00-14:00"]
    );
    // Saved (as JSON) and loaded back, as after a restart.
    let saved: Registry = serde_json::from_str(&serde_json::to_string(&registry).unwrap()).unwrap();
    assert_eq!(saved, registry);
    assert_eq!(saved.kitchen_schedules().count(), 2);
    // A later file without the columns keeps the schedule; one that contradicts it is refused.
    let plain = parse(&[&canteen]);
    let replaced = registry.replace_within(None, plain.registry).unwrap().registry;
    assert_eq!(replaced.kitchen_schedules().next().map(|(_, s)| s), Some(&schedule));
    let contradicting = [
        header,
        format!("{canteen},1-5,,"),
        format!("{},1-6,,", canteen.replace("XD330624000008", "XD330624000009")),
    ]
    .join("\n");
    let p = parse_register(contradicting.as_bytes());
    assert_eq!(errors(&p), [(3, "营业日".to_string())]);
}

#[test]
fn bad_schedule_cells_name_their_column() {
    let header = format!("{HEADER},营业日,供餐时段,营业时间");
    let rows = [
        format!("{GOOD_STERILIZER},1-8,,"),
        format!("{GOOD_STERILIZER},,午餐 13:00-11:00,"),
        format!("{GOOD_STERILIZER},,午餐,"),
        format!("{GOOD_STERILIZER},,,20:00-10:00"),
    ];
    let text = std::iter::once(header).chain(rows).collect::<Vec<_>>().join("\n");
    let p = parse_register(text.as_bytes());
    assert_eq!(
        errors(&p),
        [
            (2, "营业日".to_string()),
            (3, "供餐时段".to_string()),
            (4, "供餐时段".to_string()),
            (5, "营业时间".to_string()),
        ]
    );
}
