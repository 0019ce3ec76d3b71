//! Register maps: which registers of a controller model hold which field of the
//! protocol's status readings, and how to decode them (docs/gateway.md, "Register maps").
//!
//! A map is parsed once into a [`RegisterMap`]: the registers with their decoding, and
//! the read requests ([`Block`]s) that cover them, adjacent registers coalesced so a
//! poll costs few round trips.
use gridwatch_protocol::{DeviceKind, Method};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A map file that could not be used: which file, which key, what was expected.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("register map {}: {source}", file.display())]
    Read { file: PathBuf, source: std::io::Error },
    #[error("register map {}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("register map {}: {key}: expected {expected}", file.display())]
    Invalid {
        file: PathBuf,
        key: String,
        expected: String,
    },
}

/// The Modbus data tables a register can live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Function {
    Holding,
    Input,
    Coil,
    Discrete,
}

impl Function {
    fn is_bits(self) -> bool {
        matches!(self, Function::Coil | Function::Discrete)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    Bitfield,
}

impl ValueType {
    fn words(self) -> u16 {
        match self {
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Big,
    Little,
}

/// A status field of the protocol that a register (or a bit of one) supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Meaning {
    // Lift (LiftStatus).
    Floor,
    Motion,
    Door,
    DoorZone,
    Occupied,
    Alarm,
    Fault,
    Mode,
    Power,
    Runs,
    DoorCycles,
    // Sterilizer (SterilizerStatus); `door` and `power` are shared names.
    TempC,
    Heating,
    InCycle,
}

/// How a meaning takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Number,
    Flag,
    /// A label from `values`, one of these.
    Label(&'static [&'static str]),
}

impl Meaning {
    fn parse(kind: DeviceKind, name: &str) -> Option<Meaning> {
        let lift = [
            ("floor", Meaning::Floor),
            ("motion", Meaning::Motion),
            ("door", Meaning::Door),
            ("door_zone", Meaning::DoorZone),
            ("occupied", Meaning::Occupied),
            ("alarm", Meaning::Alarm),
            ("fault", Meaning::Fault),
            ("mode", Meaning::Mode),
            ("power", Meaning::Power),
            ("runs", Meaning::Runs),
            ("door_cycles", Meaning::DoorCycles),
        ];
        let sterilizer = [
            ("temp_c", Meaning::TempC),
            ("door", Meaning::Door),
            ("heating", Meaning::Heating),
            ("power", Meaning::Power),
            ("in_cycle", Meaning::InCycle),
        ];
        let table: &[(&str, Meaning)] = match kind {
            DeviceKind::Lift => &lift,
            DeviceKind::Sterilizer => &sterilizer,
        };
        table.iter().find(|(n, _)| *n == name).map(|(_, m)| *m)
    }

    fn names(kind: DeviceKind) -> &'static str {
        match kind {
            DeviceKind::Lift => {
                "one of floor, motion, door, door_zone, occupied, alarm, fault, mode, power, runs, door_cycles"
            }
            DeviceKind::Sterilizer => "one of temp_c, door, heating, power, in_cycle",
        }
    }

    fn shape(self, kind: DeviceKind) -> Shape {
        match self {
            Meaning::Floor | Meaning::Fault | Meaning::Runs | Meaning::DoorCycles | Meaning::TempC => Shape::Number,
            Meaning::Motion => Shape::Label(&["stopped", "up", "down"]),
            Meaning::Door => Shape::Label(&["open", "closed"]),
            Meaning::Mode => Shape::Label(&["normal", "inspection", "fire", "out_of_service"]),
            Meaning::Power if kind == DeviceKind::Lift => Shape::Label(&["mains", "battery"]),
            _ => Shape::Flag,
        }
    }

    /// Fields without which a status would say nothing.
    fn required(kind: DeviceKind) -> &'static [(Meaning, &'static str)] {
        match kind {
            DeviceKind::Lift => &[(Meaning::Floor, "floor"), (Meaning::Door, "door")],
            DeviceKind::Sterilizer => &[(Meaning::TempC, "temp_c"), (Meaning::Door, "door")],
        }
    }
}

/// A decoded value, before it is applied to a status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Number(f64),
    Flag(bool),
    Label(&'static str),
}

/// One field's source: where it is and how to decode it.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) meaning: Meaning,
    function: Function,
    address: u16,
    ty: ValueType,
    /// For one bit of a bitfield register.
    bit: Option<u8>,
    byte_order: Order,
    word_order: Order,
    scale: f64,
    /// Changes smaller than this do not make a new status reading.
    pub(crate) deadband: f64,
    /// Flags from numbers: true for these raw values, or else above this scaled value.
    true_when: Option<Vec<i64>>,
    above: f64,
    /// Labels from raw values.
    values: BTreeMap<i64, &'static str>,
}

/// One read request of a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub function: Function,
    pub address: u16,
    pub count: u16,
}

/// What a block read returned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// A parsed register map.
#[derive(Debug, Clone)]
pub struct RegisterMap {
    pub model: String,
    pub kind: DeviceKind,
    pub unit_id: u8,
    /// Sterilizers: the method their status reports.
    pub method: Option<Method>,
    pub(crate) fields: Vec<Field>,
    pub blocks: Vec<Block>,
}

/// Registers further apart than this are read by separate requests.
const MAX_GAP: u16 = 8;

// The file as written; checked field by field into a `RegisterMap`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    model: String,
    kind: String,
    unit_id: u16,
    method: Option<String>,
    byte_order: Option<String>,
    word_order: Option<String>,
    #[serde(default)]
    register: Vec<RegisterFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterFile {
    function: String,
    address: u32,
    #[serde(rename = "type")]
    ty: String,
    count: Option<u16>,
    meaning: Option<String>,
    bits: Option<BTreeMap<String, u8>>,
    byte_order: Option<String>,
    word_order: Option<String>,
    scale: Option<f64>,
    #[allow(dead_code)] // documentation for people; the protocol fixes each field's unit
    unit: Option<String>,
    deadband: Option<f64>,
    true_when: Option<Vec<i64>>,
    above: Option<f64>,
    values: Option<BTreeMap<String, String>>,
}

impl RegisterMap {
    pub fn load(file: &Path) -> Result<RegisterMap, MapError> {
        let text = std::fs::read_to_string(file).map_err(|source| MapError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Parses `text`; `file` names it in errors.
    pub fn parse(file: &Path, text: &str) -> Result<RegisterMap, MapError> {
        let raw: MapFile = toml::from_str(text).map_err(|e| MapError::Syntax {
            file: file.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |key: &str, expected: &str| MapError::Invalid {
            file: file.to_path_buf(),
            key: key.to_string(),
            expected: expected.to_string(),
        };
        let kind = match raw.kind.as_str() {
            "lift" => DeviceKind::Lift,
            "sterilizer" => DeviceKind::Sterilizer,
            _ => return Err(invalid("kind", "\"lift\" or \"sterilizer\"")),
        };
        let unit_id = u8::try_from(raw.unit_id)
            .ok()
            .filter(|id| (1..=247).contains(id))
            .ok_or_else(|| invalid("unit_id", "a Modbus unit id 1-247"))?;
        let method = match (kind, raw.method.as_deref()) {
            (DeviceKind::Sterilizer, Some("steam")) => Some(Method::Steam),
            (DeviceKind::Sterilizer, Some("infrared")) => Some(Method::Infrared),
            (DeviceKind::Sterilizer, Some("dishwasher")) => Some(Method::Dishwasher),
            (DeviceKind::Sterilizer, _) => {
                return Err(invalid("method", "\"steam\", \"infrared\" or \"dishwasher\""));
            }
            (DeviceKind::Lift, None) => None,
            (DeviceKind::Lift, Some(_)) => return Err(invalid("method", "no method for a lift")),
        };
        let order = |key: &str, value: Option<&str>, default: Order| match value {
            None => Ok(default),
            Some("big") => Ok(Order::Big),
            Some("little") => Ok(Order::Little),
            Some(_) => Err(invalid(key, "\"big\" or \"little\"")),
        };
        let byte_order = order("byte_order", raw.byte_order.as_deref(), Order::Big)?;
        let word_order = order("word_order", raw.word_order.as_deref(), Order::Big)?;

        let mut fields = Vec::new();
        for (i, r) in raw.register.iter().enumerate() {
            let key = |name: &str| format!("register[{i}].{name}");
            let function = match r.function.as_str() {
                "holding" => Function::Holding,
                "input" => Function::Input,
                "coil" => Function::Coil,
                "discrete" => Function::Discrete,
                _ => {
                    return Err(invalid(
                        &key("function"),
                        "\"holding\", \"input\", \"coil\" or \"discrete\"",
                    ));
                }
            };
            let ty = match r.ty.as_str() {
                "u16" => ValueType::U16,
                "i16" => ValueType::I16,
                "u32" => ValueType::U32,
                "i32" => ValueType::I32,
                "f32" => ValueType::F32,
                "bool" => ValueType::Bool,
                "bitfield" => ValueType::Bitfield,
                _ => {
                    return Err(invalid(&key("type"), "one of u16, i16, u32, i32, f32, bool, bitfield"));
                }
            };
            if function.is_bits() && ty != ValueType::Bool {
                return Err(invalid(&key("type"), "\"bool\" for a coil or discrete input"));
            }
            let words = ty.words();
            if let Some(count) = r.count
                && count != words
            {
                return Err(invalid(&key("count"), &format!("{words} for a {}", r.ty)));
            }
            let address = u16::try_from(r.address)
                .ok()
                .filter(|a| a.checked_add(words - 1).is_some())
                .ok_or_else(|| invalid(&key("address"), "an address 0-65535 with room for the value"))?;
            let scale = r.scale.unwrap_or(1.0);
            if !scale.is_finite() || scale == 0.0 {
                return Err(invalid(&key("scale"), "a finite, non-zero number"));
            }
            let base = Field {
                meaning: Meaning::Floor,
                function,
                address,
                ty,
                bit: None,
                byte_order: order(&key("byte_order"), r.byte_order.as_deref(), byte_order)?,
                word_order: order(&key("word_order"), r.word_order.as_deref(), word_order)?,
                scale,
                deadband: r.deadband.unwrap_or(0.0),
                true_when: r.true_when.clone(),
                above: r.above.unwrap_or(0.0),
                values: BTreeMap::new(),
            };
            let meaning_of =
                |name: &str, k: &str| Meaning::parse(kind, name).ok_or_else(|| invalid(k, Meaning::names(kind)));
            match (ty, &r.meaning, &r.bits) {
                (ValueType::Bitfield, None, Some(bits)) => {
                    for (name, bit) in bits {
                        let k = key(&format!("bits.{name}"));
                        let meaning = meaning_of(name, &k)?;
                        if *bit > 15 {
                            return Err(invalid(&k, "a bit number 0-15"));
                        }
                        if meaning.shape(kind) != Shape::Flag {
                            return Err(invalid(&k, "a yes/no field (a bit cannot hold a number or a label)"));
                        }
                        fields.push(Field {
                            meaning,
                            bit: Some(*bit),
                            ..base.clone()
                        });
                    }
                }
                (ValueType::Bitfield, _, _) => {
                    return Err(invalid(&key("bits"), "a table of field = bit number (and no meaning)"));
                }
                (_, Some(name), None) => {
                    let meaning = meaning_of(name, &key("meaning"))?;
                    let mut field = Field { meaning, ..base };
                    match meaning.shape(kind) {
                        Shape::Label(labels) => {
                            if ty == ValueType::Bool || ty == ValueType::F32 {
                                return Err(invalid(&key("type"), "an integer type for a labelled field"));
                            }
                            let table = r.values.as_ref().ok_or_else(|| {
                                invalid(
                                    &key("values"),
                                    &format!("a table of raw value = {}", labels.join(" | ")),
                                )
                            })?;
                            for (raw_value, label) in table {
                                let k = key(&format!("values.{raw_value}"));
                                let raw_value: i64 = raw_value
                                    .parse()
                                    .map_err(|_| invalid(&k, "an integer raw value as the key"))?;
                                let label = labels
                                    .iter()
                                    .find(|l| **l == label)
                                    .ok_or_else(|| invalid(&k, &format!("one of {}", labels.join(", "))))?;
                                field.values.insert(raw_value, label);
                            }
                        }
                        Shape::Number if ty == ValueType::Bool => {
                            return Err(invalid(&key("type"), "a numeric type for a number field"));
                        }
                        _ => {}
                    }
                    fields.push(field);
                }
                _ => return Err(invalid(&key("meaning"), "a field name (bits only for type bitfield)")),
            }
        }
        for (meaning, name) in Meaning::required(kind) {
            if !fields.iter().any(|f| f.meaning == *meaning) {
                return Err(invalid("register", &format!("a register with meaning {name}")));
            }
        }
        let blocks = coalesce(&fields);
        Ok(RegisterMap {
            model: raw.model,
            kind,
            unit_id,
            method,
            fields,
            blocks,
        })
    }

    /// Decodes one poll's block data (in the order of [`Self::blocks`]) into field values.
    pub(crate) fn decode(&self, data: &[Data]) -> Result<Vec<(Meaning, Value, f64)>, DecodeError> {
        self.fields
            .iter()
            .map(|f| {
                let (block, data) = self
                    .blocks
                    .iter()
                    .zip(data)
                    .find(|(b, _)| {
                        b.function == f.function && b.address <= f.address && f.address < b.address + b.count
                    })
                    .ok_or(DecodeError::Short)?;
                let offset = usize::from(f.address - block.address);
                Ok((f.meaning, f.decode(data, offset)?, f.deadband))
            })
            .collect()
    }
}

/// A poll answer that does not fit the map.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("the slave answered fewer registers than asked for")]
    Short,
    #[error("raw value {0} has no label in the map")]
    Unlabelled(i64),
}

impl Field {
    fn decode(&self, data: &Data, offset: usize) -> Result<Value, DecodeError> {
        let number = match data {
            Data::Bits(bits) => return bits.get(offset).map(|b| Value::Flag(*b)).ok_or(DecodeError::Short),
            Data::Words(words) => {
                let words = words
                    .get(offset..offset + usize::from(self.ty.words()))
                    .ok_or(DecodeError::Short)?;
                let word = |w: u16| match self.byte_order {
                    Order::Big => w,
                    Order::Little => w.swap_bytes(),
                };
                let long = || {
                    let (hi, lo) = match self.word_order {
                        Order::Big => (words[0], words[1]),
                        Order::Little => (words[1], words[0]),
                    };
                    (u32::from(word(hi)) << 16) | u32::from(word(lo))
                };
                match self.ty {
                    ValueType::U16 => f64::from(word(words[0])),
                    ValueType::I16 => f64::from(word(words[0]) as i16),
                    ValueType::U32 => f64::from(long()),
                    ValueType::I32 => f64::from(long() as i32),
                    ValueType::F32 => f64::from(f32::from_bits(long())),
                    ValueType::Bool => return Ok(Value::Flag(word(words[0]) != 0)),
                    ValueType::Bitfield => {
                        let bit = self.bit.expect("bitfield fields have a bit");
                        return Ok(Value::Flag(word(words[0]) & (1 << bit) != 0));
                    }
                }
            }
        };
        if !self.values.is_empty() {
            let raw = number as i64;
            return self
                .values
                .get(&raw)
                .map(|l| Value::Label(l))
                .ok_or(DecodeError::Unlabelled(raw));
        }
        if let Some(raw_values) = &self.true_when {
            return Ok(Value::Flag(raw_values.contains(&(number as i64))));
        }
        let scaled = number * self.scale;
        Ok(match self.meaning {
            Meaning::DoorZone
            | Meaning::Occupied
            | Meaning::Alarm
            | Meaning::Heating
            | Meaning::InCycle
            | Meaning::Power => Value::Flag(scaled > self.above),
            _ => Value::Number(scaled),
        })
    }
}

/// The read requests covering every field: per table, ascending, neighbours within
/// [`MAX_GAP`] merged up to the protocol's per-request limit.
fn coalesce(fields: &[Field]) -> Vec<Block> {
    let mut spans: Vec<(Function, u16, u16)> = fields
        .iter()
        .map(|f| (f.function, f.address, f.address + (f.ty.words() - 1)))
        .collect();
    spans.sort();
    let mut blocks: Vec<Block> = Vec::new();
    for (function, first, last) in spans {
        let limit = if function.is_bits() { 2000 } else { 125 };
        if let Some(b) = blocks.last_mut()
            && b.function == function
            && u32::from(first) <= u32::from(b.address) + u32::from(b.count) + u32::from(MAX_GAP)
            && u32::from(last) - u32::from(b.address) < limit
        {
            b.count = b.count.max(last - b.address + 1);
            continue;
        }
        blocks.push(Block {
            function,
            address: first,
            count: last - first + 1,
        });
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RegisterMap, MapError> {
        RegisterMap::parse(Path::new("maps/test.toml"), text)
    }

    const LIFT: &str = r#"
model = "test"
kind = "lift"
unit_id = 3
[[register]]
function = "holding"
address = 0
type = "i16"
meaning = "floor"
[[register]]
function = "holding"
address = 1
type = "u16"
meaning = "door"
values = { "0" = "closed", "1" = "open" }
[[register]]
function = "holding"
address = 4
type = "u32"
word_order = "little"
meaning = "runs"
[[register]]
function = "input"
address = 0
type = "bitfield"
bits = { alarm = 0, occupied = 3 }
[[register]]
function = "discrete"
address = 7
type = "bool"
meaning = "door_zone"
"#;

    #[test]
    fn neighbouring_registers_are_read_together_and_decoded_by_type_and_order() {
        let map = parse(LIFT).unwrap();
        assert_eq!(map.unit_id, 3);
        let blocks: Vec<_> = map.blocks.iter().map(|b| (b.function, b.address, b.count)).collect();
        assert_eq!(
            blocks,
            vec![
                (Function::Holding, 0, 6),
                (Function::Input, 0, 1),
                (Function::Discrete, 7, 1)
            ]
        );
        let data = vec![
            Data::Words(vec![(-1i16) as u16, 1, 0, 0, 0x0002, 0x0001]),
            Data::Words(vec![0b1001]),
            Data::Bits(vec![true]),
        ];
        let values = map.decode(&data).unwrap();
        let get = |m| values.iter().find(|(meaning, _, _)| *meaning == m).unwrap().1;
        assert_eq!(get(Meaning::Floor), Value::Number(-1.0));
        assert_eq!(get(Meaning::Door), Value::Label("open"));
        assert_eq!(get(Meaning::Runs), Value::Number(f64::from(0x0001_0002u32)));
        assert_eq!(get(Meaning::Alarm), Value::Flag(true));
        assert_eq!(get(Meaning::Occupied), Value::Flag(true));
        assert_eq!(get(Meaning::DoorZone), Value::Flag(true));
        let unlabelled = vec![
            Data::Words(vec![0, 9, 0, 0, 0, 0]),
            Data::Words(vec![0]),
            Data::Bits(vec![false]),
        ];
        assert_eq!(map.decode(&unlabelled), Err(DecodeError::Unlabelled(9)));
    }

    #[test]
    fn floats_scale_and_byte_order() {
        let map = parse(
            r#"
model = "t"
kind = "sterilizer"
method = "dishwasher"
unit_id = 1
byte_order = "little"
[[register]]
function = "input"
address = 0
type = "f32"
meaning = "temp_c"
[[register]]
function = "input"
address = 2
type = "u16"
meaning = "door"
values = { "0" = "closed", "1" = "open" }
"#,
        )
        .unwrap();
        let bits = 85.5f32.to_bits();
        let words = vec![((bits >> 16) as u16).swap_bytes(), (bits as u16).swap_bytes(), 0];
        let values = map.decode(&[Data::Words(words)]).unwrap();
        assert_eq!(values[0].1, Value::Number(85.5));
        assert_eq!(values[1].1, Value::Label("closed"));
    }

    #[test]
    fn errors_name_the_file_the_key_and_what_was_expected() {
        let cases = [
            (
                LIFT.replace("type = \"i16\"", "type = \"int\""),
                "register[0].type: expected one of u16",
            ),
            (
                LIFT.replace("\"1\" = \"open\"", "\"1\" = \"ajar\""),
                "register[1].values.1: expected one of open, closed",
            ),
            (
                LIFT.replace("meaning = \"floor\"", "meaning = \"storey\""),
                "register[0].meaning: expected one of floor",
            ),
            (
                LIFT.replace("unit_id = 3", "unit_id = 300"),
                "unit_id: expected a Modbus unit id 1-247",
            ),
            (
                LIFT.replace("address = 4", "address = 4\ncount = 1"),
                "register[2].count: expected 2 for a u32",
            ),
            (
                LIFT.replace("occupied = 3", "occupied = 3, floor = 2"),
                "register[3].bits.floor: expected a yes/no field",
            ),
            (
                LIFT.replace("meaning = \"floor\"", "meaning = \"fault\""),
                "register: expected a register with meaning floor",
            ),
            (
                LIFT.replace("address = 0\ntype = \"i16\"", "adress = 0\ntype = \"i16\""),
                "unknown field `adress`",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with("register map maps/test.toml: "), "{err}");
            assert!(err.contains(expected), "{err}\n  does not contain {expected}");
        }
    }

    #[test]
    fn the_shipped_maps_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("maps");
        let mut kinds = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let map = RegisterMap::load(&entry.unwrap().path()).unwrap();
            kinds.push(map.kind);
        }
        assert!(kinds.contains(&DeviceKind::Lift) && kinds.contains(&DeviceKind::Sterilizer));
    }
}
