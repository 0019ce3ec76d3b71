//! The dashboard's languages: Simplified Chinese by default, English on request
//! (`?lang=en`, kept in the `lang` cookie). Every label a page shows comes from one table
//! per language, keyed by a stable name (an enum's serde name, never its `Debug`).
use serde::Serialize;
use std::collections::HashMap;
use std::sync::LazyLock;

/// The language cookie's name.
pub(crate) const LANG_COOKIE: &str = "lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lang {
    #[default]
    Zh,
    En,
}

impl Lang {
    /// `zh` / `zh-CN` or `en`; anything else is not a language of the dashboard.
    pub(crate) fn parse(text: &str) -> Option<Lang> {
        match text.trim().to_ascii_lowercase().as_str() {
            "zh" | "zh-cn" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The code in `?lang=` and the cookie.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// The `<html lang>` attribute.
    pub(crate) fn html(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language the switch link offers.
    pub(crate) fn other(self) -> Lang {
        match self {
            Lang::Zh => Lang::En,
            Lang::En => Lang::Zh,
        }
    }

    /// The label of `key`; a key missing from the table shows as itself (the tests
    /// check both tables hold the same keys).
    pub(crate) fn t(self, key: &str) -> String {
        let table: &HashMap<&str, &str> = match self {
            Lang::Zh => &ZH_MAP,
            Lang::En => &EN_MAP,
        };
        match table.get(key) {
            Some(label) => (*label).to_string(),
            None => {
                tracing::debug!(key, "dashboard label missing");
                key.to_string()
            }
        }
    }

    /// The label of `key` if the table has one, else `fallback` (device state fields the
    /// tables do not name, from newer firmware).
    pub(crate) fn t_or(self, key: &str, fallback: &str) -> String {
        let table: &HashMap<&str, &str> = match self {
            Lang::Zh => &ZH_MAP,
            Lang::En => &EN_MAP,
        };
        table
            .get(key)
            .map_or_else(|| fallback.to_string(), |l| (*l).to_string())
    }

    /// The label of an enum value under `prefix`, by its serde name (`case_type.trapped_passenger`).
    pub(crate) fn of<T: Serialize>(self, prefix: &str, value: &T) -> String {
        self.t(&format!("{prefix}.{}", serde_name(value)))
    }

    /// An alert kind as stored (`trapped_passenger`, `fault:301`).
    pub(crate) fn alert_kind(self, kind: &str) -> String {
        match kind.strip_prefix("fault:") {
            Some(code) => format!("{} {code}", self.t("alert.fault")),
            None => self.t(&format!("alert.{kind}")),
        }
    }
}

/// The serde name of a unit enum value (`"trapped_passenger"`), or its JSON for others.
pub(crate) fn serde_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

static ZH_MAP: LazyLock<HashMap<&str, &str>> = LazyLock::new(|| ZH.iter().copied().collect());
static EN_MAP: LazyLock<HashMap<&str, &str>> = LazyLock::new(|| EN.iter().copied().collect());

/// 简体中文.
const ZH: &[(&str, &str)] = &[
    ("app.title", "网格监管平台"),
    ("lang.switch", "English"),
    ("nav.overview", "总览"),
    ("nav.cases", "案件"),
    ("nav.stats", "统计"),
    ("nav.signout", "退出登录"),
    ("nav.open_mode", "开放模式（只读）"),
    ("signin.title", "登录"),
    ("signin.token", "API 令牌"),
    ("signin.submit", "登录"),
    ("signin.help", "请粘贴管理员发给您的 API 令牌（gridwatch users add）。"),
    ("signin.bad_token", "令牌无效或已被撤销，请检查后重试。"),
    ("signin.bad_form", "表单已过期，请重新提交。"),
    ("signin.full", "登录会话已满，请稍后再试。"),
    ("signin.as", "当前用户"),
    ("overview.alerts", "未处理告警"),
    ("overview.grids", "网格"),
    ("overview.devices", "设备"),
    ("overview.show_all", "显示全部"),
    ("overview.none", "无"),
    ("overview.live", "实时更新"),
    ("page.prev", "上一页"),
    ("page.next", "下一页"),
    ("page.of", "页，共"),
    ("col.raised", "发生时间"),
    ("col.kind", "类型"),
    ("col.device", "设备"),
    ("col.severity", "级别"),
    ("col.state", "状态"),
    ("col.health", "健康状况"),
    ("col.grid", "网格"),
    ("col.unit", "使用单位"),
    ("col.last_seen", "最后上报"),
    ("col.count", "数量"),
    ("col.case", "案件"),
    ("col.priority", "优先级"),
    ("col.status", "进度"),
    ("col.opened", "立案时间"),
    ("col.step", "环节"),
    ("col.due", "期限"),
    ("col.done", "完成时间"),
    ("col.actor", "办理人"),
    ("col.role", "角色"),
    ("col.note", "意见"),
    ("col.at", "时间"),
    ("col.level", "督办级别"),
    ("col.date", "日期"),
    ("col.next_due", "下次到期"),
    ("col.devices", "设备数"),
    ("col.unhealthy", "异常"),
    ("col.firm", "维保单位"),
    ("col.type", "设备类型"),
    ("col.overdue_s", "超时（秒）"),
    ("col.mean_response_s", "平均受理用时（秒）"),
    ("col.mean_close_s", "平均办结用时（秒）"),
    ("col.closed", "已办结"),
    ("col.cleared", "恢复时间"),
    ("health.ok", "正常"),
    ("health.fault", "故障"),
    ("health.trapped", "困人"),
    ("health.offline", "离线"),
    ("health.overdue", "检验/维保逾期"),
    ("health.due_soon", "检验/维保即将到期"),
    ("severity.critical", "紧急"),
    ("severity.major", "严重"),
    ("severity.minor", "一般"),
    ("severity.warning", "提示"),
    ("alert_state.raised", "未确认"),
    ("alert_state.acknowledged", "已确认"),
    ("alert_state.cleared", "已恢复"),
    ("alert.fault", "故障代码"),
    ("alert.door_open_while_running", "运行中开门"),
    ("alert.stopped_outside_door_zone", "非平层停梯"),
    ("alert.power_loss", "停电"),
    ("alert.trapped_passenger", "困人"),
    ("alert.cycle_aborted", "消毒中断"),
    ("alert.cycle_under_temperature", "消毒温度不足"),
    ("alert.cycle_hold_too_short", "消毒保持时间不足"),
    ("alert.no_cycle_in_meal_period", "餐时未消毒"),
    ("alert.inspection_due_soon", "定期检验即将到期"),
    ("alert.inspection_overdue", "定期检验逾期"),
    ("alert.maintenance_due_soon", "维保即将到期"),
    ("alert.maintenance_overdue", "维保逾期"),
    ("alert.device_offline", "设备离线"),
    ("alert.gateway_offline", "网关离线"),
    ("case_type.trapped_passenger", "电梯困人"),
    ("case_type.equipment_fault", "设备故障"),
    ("case_type.inspection_overdue", "检验逾期"),
    ("case_type.maintenance_overdue", "维保逾期"),
    ("case_type.sterilizer_not_used", "消毒柜未使用"),
    ("case_type.sterilizer_misuse", "消毒不规范"),
    ("case_type.device_offline", "设备离线"),
    ("case_type.other", "其他"),
    ("priority.normal", "一般"),
    ("priority.high", "较高"),
    ("priority.urgent", "紧急"),
    ("status.reported", "已上报"),
    ("status.accepted", "已受理"),
    ("status.verified", "已核查"),
    ("status.handled", "已处置"),
    ("status.fed_back", "已反馈"),
    ("status.closed", "已办结"),
    ("step.accept", "发现受理"),
    ("step.verify", "核查取证"),
    ("step.handle", "处置上报"),
    ("step.feedback", "结果反馈"),
    ("step.review", "复核办结"),
    ("decision.proceed", "通过"),
    ("decision.return_for_rework", "退回重办"),
    ("response.acknowledged", "维保单位已接警"),
    ("response.arrived_on_site", "维保人员已到场"),
    ("role.grid_head", "网格长"),
    ("role.grid_administrator", "网格管理员"),
    ("role.information_officer", "网格信息员"),
    ("role.supervisor", "网格监督员"),
    ("role.inspector", "网格监管员"),
    ("role.maintenance_firm", "维保单位"),
    ("escalation.grid_head", "网格长督办"),
    ("escalation.emergency_service", "96333 应急救援"),
    ("level.grid", "网格"),
    ("level.unit", "单元"),
    ("level.area", "区域"),
    ("kind.lift", "电梯"),
    ("kind.sterilizer", "消毒柜"),
    ("cases.title", "案件"),
    ("cases.open", "办理中"),
    ("cases.all", "全部"),
    ("case.deadlines", "办理期限"),
    ("case.escalations", "督办记录"),
    ("case.audit", "办理记录"),
    ("case.responses", "维保响应"),
    ("case.next", "下一步"),
    ("case.none_for_you", "下一步不属于您的角色。"),
    ("case.closed", "案件已办结。"),
    ("case.late", "迟报"),
    ("case.missed", "已超期"),
    ("case.take_step", "提交"),
    ("case.record", "登记"),
    ("case.done", "已完成"),
    ("case.evidence", "证据（照片编号或链接，可选）"),
    ("case.refused", "操作未执行"),
    ("case.not_found", "没有这个案件，或您无权查看。"),
    ("device.title", "设备"),
    ("device.state", "当前状态"),
    ("device.history", "近 24 小时"),
    ("device.inspections", "定期检验"),
    ("device.maintenance", "维保记录"),
    ("device.not_found", "没有这个设备，或您无权查看。"),
    ("device.no_readings", "该时段没有数据。"),
    ("device.past_alerts", "已恢复的告警"),
    ("device.past_shown", "显示最近的"),
    ("chart.trips", "每小时运行次数"),
    ("chart.floors", "楼层范围"),
    ("chart.doors", "每小时开关门次数"),
    ("chart.temp", "温度（°C），阴影为保温区"),
    ("state.mode", "运行模式"),
    ("state.motion", "运行状态"),
    ("state.door", "门"),
    ("state.door_zone", "平层区"),
    ("state.floor", "楼层"),
    ("state.occupied", "轿厢有人"),
    ("state.alarm", "报警"),
    ("state.fault", "故障代码"),
    ("state.power", "电源"),
    ("state.runs", "累计运行次数"),
    ("state.door_cycles", "累计开关门次数"),
    ("state.method", "消毒方式"),
    ("state.temp_c", "温度（°C）"),
    ("state.heating", "加热"),
    ("state.in_cycle", "消毒中"),
    ("stats.title", "统计"),
    ("stats.by_grid", "各网格案件数"),
    ("stats.by_type", "各类型案件数"),
    ("stats.overdue_devices", "检验/维保逾期设备"),
    ("stats.overdue_cases", "超期案件"),
    ("stats.timings", "响应用时"),
    ("stats.csv", "导出 CSV"),
    ("error.title", "出错了"),
    ("error.back", "返回"),
    ("error.csrf", "表单已过期或来源不明，请刷新页面后重试。"),
    ("error.read_only", "开放模式只能查看，不能办理。"),
    ("flash.step", "已提交"),
    ("flash.response", "已登记"),
];

/// English.
const EN: &[(&str, &str)] = &[
    ("app.title", "gridwatch"),
    ("lang.switch", "中文"),
    ("nav.overview", "Overview"),
    ("nav.cases", "Cases"),
    ("nav.stats", "Statistics"),
    ("nav.signout", "Sign out"),
    ("nav.open_mode", "Open mode (read-only)"),
    ("signin.title", "Sign in"),
    ("signin.token", "API token"),
    ("signin.submit", "Sign in"),
    (
        "signin.help",
        "Paste the API token your administrator gave you (gridwatch users add).",
    ),
    ("signin.bad_token", "Unknown or revoked token: check it and try again."),
    ("signin.bad_form", "The form expired: submit it again."),
    ("signin.full", "Too many sessions: try again later."),
    ("signin.as", "Signed in as"),
    ("overview.alerts", "Open alerts"),
    ("overview.grids", "Grids"),
    ("overview.devices", "Devices"),
    ("overview.show_all", "Show all"),
    ("overview.none", "None"),
    ("overview.live", "Live"),
    ("page.prev", "Previous"),
    ("page.next", "Next"),
    ("page.of", "page, total"),
    ("col.raised", "Raised"),
    ("col.kind", "Kind"),
    ("col.device", "Device"),
    ("col.severity", "Severity"),
    ("col.state", "State"),
    ("col.health", "Health"),
    ("col.grid", "Grid"),
    ("col.unit", "Using unit"),
    ("col.last_seen", "Last seen"),
    ("col.count", "Count"),
    ("col.case", "Case"),
    ("col.priority", "Priority"),
    ("col.status", "Status"),
    ("col.opened", "Opened"),
    ("col.step", "Step"),
    ("col.due", "Due"),
    ("col.done", "Done"),
    ("col.actor", "By"),
    ("col.role", "Role"),
    ("col.note", "Note"),
    ("col.at", "At"),
    ("col.level", "Escalated to"),
    ("col.date", "Date"),
    ("col.next_due", "Next due"),
    ("col.devices", "Devices"),
    ("col.unhealthy", "Unhealthy"),
    ("col.firm", "Maintenance firm"),
    ("col.type", "Equipment type"),
    ("col.overdue_s", "Overdue (s)"),
    ("col.mean_response_s", "Mean time to accept (s)"),
    ("col.mean_close_s", "Mean time to close (s)"),
    ("col.closed", "Closed"),
    ("col.cleared", "Cleared"),
    ("health.ok", "OK"),
    ("health.fault", "Fault"),
    ("health.trapped", "Trapped passenger"),
    ("health.offline", "Offline"),
    ("health.overdue", "Inspection/maintenance overdue"),
    ("health.due_soon", "Inspection/maintenance due soon"),
    ("severity.critical", "Critical"),
    ("severity.major", "Major"),
    ("severity.minor", "Minor"),
    ("severity.warning", "Warning"),
    ("alert_state.raised", "Raised"),
    ("alert_state.acknowledged", "Acknowledged"),
    ("alert_state.cleared", "Cleared"),
    ("alert.fault", "Fault code"),
    ("alert.door_open_while_running", "Door open while running"),
    ("alert.stopped_outside_door_zone", "Stopped outside a door zone"),
    ("alert.power_loss", "Power loss"),
    ("alert.trapped_passenger", "Trapped passenger"),
    ("alert.cycle_aborted", "Cycle aborted"),
    ("alert.cycle_under_temperature", "Cycle under temperature"),
    ("alert.cycle_hold_too_short", "Cycle hold too short"),
    ("alert.no_cycle_in_meal_period", "No cycle in a meal period"),
    ("alert.inspection_due_soon", "Inspection due soon"),
    ("alert.inspection_overdue", "Inspection overdue"),
    ("alert.maintenance_due_soon", "Maintenance due soon"),
    ("alert.maintenance_overdue", "Maintenance overdue"),
    ("alert.device_offline", "Device offline"),
    ("alert.gateway_offline", "Gateway offline"),
    ("case_type.trapped_passenger", "Trapped passenger"),
    ("case_type.equipment_fault", "Equipment fault"),
    ("case_type.inspection_overdue", "Inspection overdue"),
    ("case_type.maintenance_overdue", "Maintenance overdue"),
    ("case_type.sterilizer_not_used", "Sterilizer not used"),
    ("case_type.sterilizer_misuse", "Sterilizer misuse"),
    ("case_type.device_offline", "Device offline"),
    ("case_type.other", "Other"),
    ("priority.normal", "Normal"),
    ("priority.high", "High"),
    ("priority.urgent", "Urgent"),
    ("status.reported", "Reported"),
    ("status.accepted", "Accepted"),
    ("status.verified", "Verified"),
    ("status.handled", "Handled"),
    ("status.fed_back", "Fed back"),
    ("status.closed", "Closed"),
    ("step.accept", "Accept"),
    ("step.verify", "Verify"),
    ("step.handle", "Handle"),
    ("step.feedback", "Feed back"),
    ("step.review", "Review and close"),
    ("decision.proceed", "Proceed"),
    ("decision.return_for_rework", "Return for rework"),
    ("response.acknowledged", "Firm acknowledged"),
    ("response.arrived_on_site", "Firm arrived on site"),
    ("role.grid_head", "Grid head"),
    ("role.grid_administrator", "Grid administrator"),
    ("role.information_officer", "Information officer"),
    ("role.supervisor", "Supervisor"),
    ("role.inspector", "Inspector"),
    ("role.maintenance_firm", "Maintenance firm"),
    ("escalation.grid_head", "Grid head"),
    ("escalation.emergency_service", "96333 emergency service"),
    ("level.grid", "Grid"),
    ("level.unit", "Unit"),
    ("level.area", "Area"),
    ("kind.lift", "Lift"),
    ("kind.sterilizer", "Sterilizer"),
    ("cases.title", "Cases"),
    ("cases.open", "Open"),
    ("cases.all", "All"),
    ("case.deadlines", "Deadlines"),
    ("case.escalations", "Escalations"),
    ("case.audit", "Audit trail"),
    ("case.responses", "Firm responses"),
    ("case.next", "Next step"),
    ("case.none_for_you", "The next step is not for your roles."),
    ("case.closed", "The case is closed."),
    ("case.late", "Known late"),
    ("case.missed", "Missed"),
    ("case.take_step", "Submit"),
    ("case.record", "Record"),
    ("case.done", "Done"),
    ("case.evidence", "Evidence (photo number or link, optional)"),
    ("case.refused", "Not done"),
    ("case.not_found", "No such case in your grids."),
    ("device.title", "Device"),
    ("device.state", "Current state"),
    ("device.history", "Last 24 hours"),
    ("device.inspections", "Periodic inspections"),
    ("device.maintenance", "Maintenance"),
    ("device.not_found", "No such device in your grids."),
    ("device.no_readings", "No readings in this window."),
    ("device.past_alerts", "Cleared alerts"),
    ("device.past_shown", "Showing the newest"),
    ("chart.trips", "Trips per hour"),
    ("chart.floors", "Floor range"),
    ("chart.doors", "Door cycles per hour"),
    ("chart.temp", "Temperature (°C), shaded: hold band"),
    ("state.mode", "Mode"),
    ("state.motion", "Motion"),
    ("state.door", "Door"),
    ("state.door_zone", "In a door zone"),
    ("state.floor", "Floor"),
    ("state.occupied", "Occupied"),
    ("state.alarm", "Alarm"),
    ("state.fault", "Fault code"),
    ("state.power", "Power"),
    ("state.runs", "Runs (counter)"),
    ("state.door_cycles", "Door cycles (counter)"),
    ("state.method", "Method"),
    ("state.temp_c", "Temperature (°C)"),
    ("state.heating", "Heating"),
    ("state.in_cycle", "In a cycle"),
    ("stats.title", "Statistics"),
    ("stats.by_grid", "Cases by grid"),
    ("stats.by_type", "Cases by type"),
    ("stats.overdue_devices", "Devices overdue for inspection or maintenance"),
    ("stats.overdue_cases", "Overdue cases"),
    ("stats.timings", "Response times"),
    ("stats.csv", "Export CSV"),
    ("error.title", "Something went wrong"),
    ("error.back", "Back"),
    (
        "error.csrf",
        "The form expired or came from elsewhere: reload the page and try again.",
    ),
    ("error.read_only", "Open mode is read-only: nothing can be changed."),
    ("flash.step", "Step taken"),
    ("flash.response", "Recorded"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn both_tables_hold_the_same_keys_once() {
        let zh: BTreeSet<&str> = ZH.iter().map(|(k, _)| *k).collect();
        let en: BTreeSet<&str> = EN.iter().map(|(k, _)| *k).collect();
        assert_eq!(zh.len(), ZH.len(), "a key twice in ZH");
        assert_eq!(en.len(), EN.len(), "a key twice in EN");
        assert_eq!(zh.symmetric_difference(&en).collect::<Vec<_>>(), Vec::<&&str>::new());
    }

    #[test]
    fn every_enum_value_shown_has_a_label() {
        use gridwatch_cases::{CaseType, Priority, Role, Status, Step};
        let mut keys = Vec::new();
        for t in [
            CaseType::TrappedPassenger,
            CaseType::EquipmentFault,
            CaseType::InspectionOverdue,
            CaseType::MaintenanceOverdue,
            CaseType::SterilizerNotUsed,
            CaseType::SterilizerMisuse,
            CaseType::DeviceOffline,
            CaseType::Other,
        ] {
            keys.push(format!("case_type.{}", serde_name(&t)));
        }
        for p in [Priority::Normal, Priority::High, Priority::Urgent] {
            keys.push(format!("priority.{}", serde_name(&p)));
        }
        for s in Step::ALL {
            keys.push(format!("step.{}", serde_name(&s)));
            keys.push(format!("status.{}", serde_name(&Status::Closed)));
        }
        for r in [
            Role::GridHead,
            Role::GridAdministrator,
            Role::InformationOfficer,
            Role::Supervisor,
            Role::Inspector,
            Role::MaintenanceFirm,
        ] {
            keys.push(format!("role.{}", serde_name(&r)));
        }
        for k in gridwatch_alerts::AlertKind::SIMPLE {
            keys.push(format!("alert.{k}"));
        }
        for key in keys {
            assert!(ZH_MAP.contains_key(key.as_str()), "{key} has no label");
        }
        assert_eq!(Lang::En.alert_kind("fault:301"), "Fault code 301");
        assert_eq!(Lang::Zh.t("status.fed_back"), "已反馈");
    }
}
