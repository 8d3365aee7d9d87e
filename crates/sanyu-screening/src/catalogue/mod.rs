//! Instruments as data: the built-in catalogue (embedded TOML, parsed and
//! validated at first use) and the types it is made of.
//!
//! Every rule in `instruments.toml` cites its source. A supplied catalogue
//! ([`Catalogue::from_toml`]) goes through the same validation.

use std::collections::{BTreeSet, HashSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::ScreeningError;
use crate::coding::{Coding, ItemReading};
use crate::scoring::Flag;

/// The embedded catalogue source.
pub const BUILTIN_TOML: &str = include_str!("instruments.toml");

/// A set of instruments.
#[derive(Debug, Clone)]
pub struct Catalogue {
    instruments: Vec<Instrument>,
}

/// The built-in catalogue, parsed on first use.
pub fn catalogue() -> &'static Catalogue {
    static BUILTIN: OnceLock<Catalogue> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        // The embedded file is fixed at compile time and validated by the
        // `builtin_catalogue_is_valid` test, so this cannot fail in a tested build.
        #[allow(clippy::expect_used)]
        Catalogue::from_toml(BUILTIN_TOML).expect("the embedded instrument catalogue is valid")
    })
}

/// An instrument of the built-in catalogue by id (`phq9`) or name (`PHQ-9`).
pub fn instrument(id_or_name: &str) -> Result<&'static Instrument, ScreeningError> {
    catalogue().get(id_or_name)
}

fn normalise_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

impl Catalogue {
    /// Parse and validate a catalogue in the format of `instruments.toml`.
    pub fn from_toml(text: &str) -> Result<Self, ScreeningError> {
        let raw: RawCatalogue =
            toml::from_str(text).map_err(|e| ScreeningError::Catalogue(e.to_string()))?;
        let mut ids = HashSet::new();
        let mut instruments = Vec::with_capacity(raw.instrument.len());
        for r in raw.instrument {
            if !ids.insert(normalise_name(&r.id)) {
                return Err(ScreeningError::Catalogue(format!(
                    "duplicate instrument id `{}`",
                    r.id
                )));
            }
            instruments.push(Instrument::from_raw(r)?);
        }
        Ok(Self { instruments })
    }

    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// Look an instrument up by id or name, ignoring case and punctuation
    /// (`phq9`, `PHQ-9`, `phq_a`, `PHQ-A`, `C-SSRS`...).
    pub fn get(&self, id_or_name: &str) -> Result<&Instrument, ScreeningError> {
        let wanted = normalise_name(id_or_name);
        self.instruments
            .iter()
            .find(|i| normalise_name(&i.id) == wanted || normalise_name(&i.name) == wanted)
            .ok_or_else(|| ScreeningError::UnknownInstrument(id_or_name.to_string()))
    }
}

/// One screening instrument: items, codings, scoring method, bands, subscales, flags.
#[derive(Debug, Clone)]
pub struct Instrument {
    id: String,
    name: String,
    title: String,
    source: String,
    codings: Vec<Coding>,
    scale: (u8, u8),
    items: Vec<ItemDef>,
    optional_items: Vec<String>,
    total: (u32, u32),
    method: Method,
    bands: Vec<Band>,
    subscales: Vec<Subscale>,
    item_flags: Vec<ItemFlagRule>,
}

/// One required item (column) of an instrument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemDef {
    /// `"1"`..`"n"`, or a supplementary key such as `"s1"` or `"6_recent"`.
    pub key: String,
    /// Added to the total (lie items and supplementary questions are not).
    pub scored: bool,
    /// May be left blank (SDQ items; C-SSRS questions behind a skip).
    pub blank_allowed: bool,
    pub(crate) reading: ItemReading,
}

impl ItemDef {
    /// A yes/no question inside an otherwise Likert-coded instrument.
    pub fn is_binary_supplement(&self) -> bool {
        self.reading == ItemReading::LenientYesNo
    }
}

/// An inclusive range of the total with a name (`minimal`, `class_1`...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    pub name: String,
    pub min: u32,
    pub max: u32,
}

/// What a subscale is for; decides how it takes part in the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscaleRole {
    /// SCL-90 factor: its mean takes part in the screen-positive rule.
    Factor,
    /// SCL-90 其他 (additional items): reported, not a factor.
    Additional,
    /// MHT content scale: part of the content total, marked `high` at the threshold.
    Content,
    /// MHT lie scale (效度量表).
    Validity,
    /// SDQ difficulty subscale: part of the total difficulties score.
    Problem,
    /// SDQ prosocial subscale: reported, not part of the total.
    Strength,
}

/// A named group of items.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscale {
    pub key: String,
    pub name: String,
    pub role: SubscaleRole,
    pub items: Vec<String>,
}

/// A flag set when any of `items` is at least `at_least` (canonical scale).
/// Applied to scored and to rejected rows alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFlagRule {
    pub flag: Flag,
    pub items: Vec<String>,
    pub at_least: u8,
    pub source: String,
}

/// How the total, band and instrument-specific flags are computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Method {
    /// Total = sum of the scored items; band from `bands`.
    Sum,
    /// Sum, plus `screen_positive` when total > `total_above`, or more than
    /// `positive_items_above` items are >= `positive_item_at_least`, or any factor
    /// mean >= `factor_mean_at_least`.
    Scl90 {
        total_above: u32,
        positive_item_at_least: u8,
        positive_items_above: u32,
        factor_mean_at_least: f64,
    },
    /// Content total (lie items unscored); `total_high` at `total_at_least`;
    /// content scales `high` at `scale_high_at_least`; `validity_warning` when the
    /// lie scale is at least `lie_at_least`.
    Mht {
        total_at_least: u32,
        scale_high_at_least: u32,
        lie_at_least: u32,
    },
    /// UPI screening classes `class_1` / `class_2` / `class_3`.
    Upi {
        class_1_total_at_least: u32,
        class_1_items: Vec<String>,
        supplementary: Vec<String>,
        class_1_supplementary_yes_at_least: u32,
        class_2_total_at_least: u32,
        class_2_items: Vec<String>,
    },
    /// SDQ: reverse-scored items, prorated subscales, total of the problem subscales.
    Sdq {
        reverse_items: Vec<ItemRef>,
        min_answered: u32,
    },
    /// C-SSRS screener triage: band `high` / `moderate` / `low` / `none`.
    Cssrs {
        gate_item: String,
        gated_items: Vec<String>,
        high_items: Vec<String>,
        moderate_items: Vec<String>,
        low_items: Vec<String>,
        behaviour_item: String,
        recency_item: String,
    },
}

/// An item reference in the TOML: a number (`9`) or a key (`"s1"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ItemRef {
    Number(u32),
    Key(String),
}

impl ItemRef {
    pub fn key(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Key(k) => k.clone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    instrument: Vec<RawInstrument>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstrument {
    id: String,
    name: String,
    title: String,
    source: String,
    codings: Vec<Coding>,
    scale: [u8; 2],
    items: u32,
    #[serde(default)]
    extra_items: Vec<ItemRef>,
    #[serde(default)]
    optional_items: Vec<ItemRef>,
    #[serde(default)]
    binary_items: Vec<ItemRef>,
    #[serde(default)]
    unscored_items: Vec<ItemRef>,
    #[serde(default)]
    allow_blank: Vec<ItemRef>,
    total: [u32; 2],
    method: Method,
    #[serde(default)]
    bands: Vec<Band>,
    #[serde(default)]
    subscales: Vec<RawSubscale>,
    #[serde(default)]
    item_flags: Vec<RawItemFlag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscale {
    key: String,
    name: String,
    role: SubscaleRole,
    items: Vec<ItemRef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItemFlag {
    flag: Flag,
    items: Vec<ItemRef>,
    at_least: u8,
    source: String,
}

fn keys(refs: &[ItemRef]) -> Vec<String> {
    refs.iter().map(ItemRef::key).collect()
}

impl Instrument {
    fn from_raw(r: RawInstrument) -> Result<Self, ScreeningError> {
        let id = r.id.clone();
        let fail = |msg: String| ScreeningError::Catalogue(format!("{id}: {msg}"));

        let (smin, smax) = (r.scale[0], r.scale[1]);
        if smin > smax {
            return Err(fail("scale minimum above maximum".into()));
        }
        if r.codings.is_empty() {
            return Err(fail("no accepted codings".into()));
        }
        for c in &r.codings {
            match c.numeric_range() {
                Some((cmin, cmax)) if cmax - cmin != smax - smin => {
                    return Err(fail(format!(
                        "coding {c} does not have the width of the scale {smin}-{smax}"
                    )));
                }
                None if (smin, smax) != (0, 1) => {
                    return Err(fail(format!(
                        "yes/no coding {c} needs a 0-1 scale, not {smin}-{smax}"
                    )));
                }
                _ => {}
            }
        }

        let mut all_keys: Vec<String> = (1..=r.items).map(|n| n.to_string()).collect();
        all_keys.extend(keys(&r.extra_items));
        let known: BTreeSet<&str> = all_keys.iter().map(String::as_str).collect();
        if known.len() != all_keys.len() {
            return Err(fail("duplicate item keys".into()));
        }
        let check = |what: &str, list: &[String]| -> Result<(), ScreeningError> {
            match list.iter().find(|k| !known.contains(k.as_str())) {
                Some(k) => Err(fail(format!("{what} refers to unknown item `{k}`"))),
                None => Ok(()),
            }
        };
        let binary = keys(&r.binary_items);
        let unscored = keys(&r.unscored_items);
        let allow_blank = keys(&r.allow_blank);
        let optional = keys(&r.optional_items);
        check("binary_items", &binary)?;
        check("unscored_items", &unscored)?;
        check("allow_blank", &allow_blank)?;
        if let Some(k) = optional.iter().find(|k| known.contains(k.as_str())) {
            return Err(fail(format!("optional item `{k}` is also a required item")));
        }
        if !binary.is_empty() && (smin, smax) == (0, 1) {
            return Err(fail("binary_items are for Likert instruments only".into()));
        }

        let is_sdq = matches!(r.method, Method::Sdq { .. });
        let items: Vec<ItemDef> = all_keys
            .iter()
            .map(|k| ItemDef {
                key: k.clone(),
                scored: !unscored.contains(k) && !binary.contains(k),
                blank_allowed: is_sdq || allow_blank.contains(k),
                reading: if binary.contains(k) {
                    ItemReading::LenientYesNo
                } else {
                    ItemReading::Declared {
                        min: smin,
                        max: smax,
                    }
                },
            })
            .collect();

        let mut subscales = Vec::with_capacity(r.subscales.len());
        for s in r.subscales {
            let items = keys(&s.items);
            check(&format!("subscale {}", s.key), &items)?;
            if items.is_empty() {
                return Err(fail(format!("subscale {} has no items", s.key)));
            }
            subscales.push(Subscale {
                key: s.key,
                name: s.name,
                role: s.role,
                items,
            });
        }

        let mut item_flags = Vec::with_capacity(r.item_flags.len());
        for f in r.item_flags {
            let items = keys(&f.items);
            check(&format!("flag {}", f.flag.as_str()), &items)?;
            let reading_max = items
                .iter()
                .filter_map(|k| items_lookup(&all_keys, &binary, k, smax))
                .max()
                .unwrap_or(smax);
            if f.at_least == 0 || f.at_least > reading_max {
                return Err(fail(format!(
                    "flag {} threshold {} is outside the items' scale",
                    f.flag.as_str(),
                    f.at_least
                )));
            }
            item_flags.push(ItemFlagRule {
                flag: f.flag,
                items,
                at_least: f.at_least,
                source: f.source,
            });
        }

        match &r.method {
            Method::Upi {
                class_1_items,
                supplementary,
                class_2_items,
                ..
            } => {
                check("upi class_1_items", class_1_items)?;
                check("upi supplementary", supplementary)?;
                check("upi class_2_items", class_2_items)?;
            }
            Method::Sdq { reverse_items, .. } => {
                check("sdq reverse_items", &keys(reverse_items))?;
            }
            Method::Cssrs {
                gate_item,
                gated_items,
                high_items,
                moderate_items,
                low_items,
                behaviour_item,
                recency_item,
            } => {
                check("cssrs gate_item", std::slice::from_ref(gate_item))?;
                check("cssrs gated_items", gated_items)?;
                check("cssrs high_items", high_items)?;
                check("cssrs moderate_items", moderate_items)?;
                check("cssrs low_items", low_items)?;
                check("cssrs behaviour_item", std::slice::from_ref(behaviour_item))?;
                check("cssrs recency_item", std::slice::from_ref(recency_item))?;
            }
            Method::Sum | Method::Scl90 { .. } | Method::Mht { .. } => {}
        }

        // The declared total range must be the range the method can produce.
        let expected_total = if is_sdq {
            let max: usize = subscales
                .iter()
                .filter(|s| s.role == SubscaleRole::Problem)
                .map(|s| s.items.len() * usize::from(smax))
                .sum();
            (0, u32::try_from(max).unwrap_or(u32::MAX))
        } else {
            let n = u32::try_from(items.iter().filter(|i| i.scored).count()).unwrap_or(u32::MAX);
            (n * u32::from(smin), n * u32::from(smax))
        };
        if (r.total[0], r.total[1]) != expected_total {
            return Err(fail(format!(
                "total range {:?} does not match the items, which give {:?}",
                r.total, expected_total
            )));
        }

        if !r.bands.is_empty() {
            let mut next = r.total[0];
            for b in &r.bands {
                if b.min != next || b.max < b.min {
                    return Err(fail(format!(
                        "band {} must start at {next} and not end before it starts",
                        b.name
                    )));
                }
                next = b.max + 1;
            }
            if next != r.total[1] + 1 {
                return Err(fail("bands do not cover the total range".into()));
            }
        }

        Ok(Self {
            id: r.id,
            name: r.name,
            title: r.title,
            source: r.source,
            codings: r.codings,
            scale: (smin, smax),
            items,
            optional_items: optional,
            total: (r.total[0], r.total[1]),
            method: r.method,
            bands: r.bands,
            subscales,
            item_flags,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn title(&self) -> &str {
        &self.title
    }
    /// The literature the instrument's rules come from.
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn codings(&self) -> &[Coding] {
        &self.codings
    }
    pub fn accepts(&self, coding: Coding) -> bool {
        self.codings.contains(&coding)
    }
    /// `Ok` when files of this instrument may be coded `coding`.
    pub fn check_coding(&self, coding: Coding) -> Result<(), ScreeningError> {
        if self.accepts(coding) {
            Ok(())
        } else {
            Err(ScreeningError::CodingNotAccepted {
                instrument: self.name.clone(),
                coding: coding.to_string(),
                accepted: self
                    .codings
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
    /// The canonical item scale `(min, max)`.
    pub fn scale(&self) -> (u8, u8) {
        self.scale
    }
    /// Required items, in order.
    pub fn items(&self) -> &[ItemDef] {
        &self.items
    }
    pub fn item(&self, key: &str) -> Option<&ItemDef> {
        self.items.iter().find(|i| i.key == key)
    }
    /// Items that may appear in a file but are neither required nor scored.
    pub fn optional_items(&self) -> &[String] {
        &self.optional_items
    }
    /// Whether `key` is a required or an optional item.
    pub fn is_known_item(&self, key: &str) -> bool {
        self.item(key).is_some() || self.optional_items.iter().any(|k| k == key)
    }
    /// The published range of the total `(min, max)`.
    pub fn total_range(&self) -> (u32, u32) {
        self.total
    }
    pub fn method(&self) -> &Method {
        &self.method
    }
    pub fn bands(&self) -> &[Band] {
        &self.bands
    }
    pub fn subscales(&self) -> &[Subscale] {
        &self.subscales
    }
    pub fn item_flags(&self) -> &[ItemFlagRule] {
        &self.item_flags
    }
    /// The band of a total, for instruments banded by total.
    pub fn band_for(&self, total: u32) -> Option<&Band> {
        self.bands.iter().find(|b| b.min <= total && total <= b.max)
    }
}

/// The highest canonical value of an item (1 for yes/no supplements).
fn items_lookup(all: &[String], binary: &[String], key: &str, smax: u8) -> Option<u8> {
    if !all.iter().any(|k| k == key) {
        return None;
    }
    Some(if binary.iter().any(|k| k == key) {
        1
    } else {
        smax
    })
}

#[cfg(test)]
mod tests;
