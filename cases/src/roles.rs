//! Users, their roles per grid, and what they may see.
//!
//! A grid role holds for every grid under its scope, so a grid head assigned an area acts
//! in all of that area's grids. A maintenance-firm user has no grid: they see exactly the
//! devices (and cases) of their firm.
use crate::grid::{GridCode, GridScope};
use serde::{Deserialize, Serialize};

/// A role in the grid organisation, or a maintenance firm's staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Role {
    /// 网格长: owns an area.
    GridHead,
    /// 网格管理员.
    GridAdministrator,
    /// 网格信息员: reports and accepts.
    InformationOfficer,
    /// 网格监督员: checks and closes.
    Supervisor,
    /// Market-supervision inspector (网格监管员): verifies on site.
    Inspector,
    /// 维保单位 staff: handles their firm's devices.
    MaintenanceFirm,
}

impl Role {
    pub const fn chinese(self) -> &'static str {
        match self {
            Role::GridHead => "网格长",
            Role::GridAdministrator => "网格管理员",
            Role::InformationOfficer => "网格信息员",
            Role::Supervisor => "网格监督员",
            Role::Inspector => "网格监管员",
            Role::MaintenanceFirm => "维保单位",
        }
    }
}

/// One thing a user is: a grid role over a scope, or staff of a maintenance firm.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Assignment {
    Grid { role: Role, scope: GridScope },
    Firm { firm: String },
}

impl Assignment {
    pub fn role(&self) -> Role {
        match self {
            Assignment::Grid { role, .. } => *role,
            Assignment::Firm { .. } => Role::MaintenanceFirm,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub name: String,
    pub assignments: Vec<Assignment>,
}

/// What a thing (device, case) is attached to, for visibility and permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    pub grid: GridCode,
    pub firm: Option<&'a str>,
}

impl User {
    /// The roles this user holds for something at `place`: grid roles whose scope contains
    /// its grid, and the firm role when it belongs to the user's firm.
    pub fn roles_at(&self, place: Placement<'_>) -> impl Iterator<Item = Role> + '_ {
        let firm = place.firm.map(str::to_string);
        self.assignments.iter().filter_map(move |a| match a {
            Assignment::Grid { role, scope } if scope.contains(place.grid) => Some(*role),
            Assignment::Firm { firm: mine } if firm.as_deref() == Some(mine.as_str()) => Some(Role::MaintenanceFirm),
            _ => None,
        })
    }

    /// Whether the user holds `role` anywhere at all.
    pub fn has_role(&self, role: Role) -> bool {
        self.assignments.iter().any(|a| a.role() == role)
    }

    pub fn can_see(&self, place: Placement<'_>) -> bool {
        self.roles_at(place).next().is_some()
    }

    /// The grid scopes this user sees, without those covered by a wider one.
    pub fn visible_scopes(&self) -> Vec<GridScope> {
        let scopes: Vec<GridScope> = self
            .assignments
            .iter()
            .filter_map(|a| match a {
                Assignment::Grid { scope, .. } => Some(*scope),
                Assignment::Firm { .. } => None,
            })
            .collect();
        let mut widest: Vec<GridScope> = scopes
            .iter()
            .copied()
            .filter(|s| !scopes.iter().any(|o| o != s && o.covers(*s)))
            .collect();
        widest.sort();
        widest.dedup();
        widest
    }

    /// The maintenance firms whose devices this user sees.
    pub fn firms(&self) -> Vec<&str> {
        self.assignments
            .iter()
            .filter_map(|a| match a {
                Assignment::Firm { firm } => Some(firm.as_str()),
                Assignment::Grid { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> GridScope {
        GridScope::parse(s).unwrap()
    }

    fn at(grid: &str, firm: Option<&'static str>) -> Placement<'static> {
        Placement {
            grid: GridCode::parse(grid).unwrap(),
            firm,
        }
    }

    #[test]
    fn an_area_role_covers_all_its_grids_and_nothing_else() {
        let head = User {
            id: "u1".into(),
            name: "王网格长".into(),
            assignments: vec![Assignment::Grid {
                role: Role::GridHead,
                scope: scope("01"),
            }],
        };
        assert!(head.can_see(at("010304", None)));
        assert!(!head.can_see(at("020101", None)));
        assert_eq!(head.roles_at(at("010101", None)).collect::<Vec<_>>(), [Role::GridHead]);
    }

    #[test]
    fn roles_in_several_grids_and_visible_scopes_collapse() {
        let u = User {
            id: "u2".into(),
            name: "李".into(),
            assignments: vec![
                Assignment::Grid {
                    role: Role::InformationOfficer,
                    scope: scope("010101"),
                },
                Assignment::Grid {
                    role: Role::Supervisor,
                    scope: scope("0101"),
                },
                Assignment::Grid {
                    role: Role::Supervisor,
                    scope: scope("020304"),
                },
            ],
        };
        assert_eq!(u.visible_scopes(), [scope("0101"), scope("020304")]);
        let roles: Vec<Role> = u.roles_at(at("010101", None)).collect();
        assert_eq!(roles, [Role::InformationOfficer, Role::Supervisor]);
        assert_eq!(u.roles_at(at("010102", None)).collect::<Vec<_>>(), [Role::Supervisor]);
    }

    #[test]
    fn firm_staff_see_only_their_firms_devices() {
        let mf = User {
            id: "m1".into(),
            name: "张".into(),
            assignments: vec![Assignment::Firm { firm: "MF01".into() }],
        };
        assert!(mf.can_see(at("010101", Some("MF01"))));
        assert!(!mf.can_see(at("010101", Some("MF02"))));
        assert!(!mf.can_see(at("010101", None)));
        assert_eq!(mf.firms(), ["MF01"]);
        assert!(mf.visible_scopes().is_empty());
    }
}
