//! The serde `Deserializer` that reads the flat keys under a prefix into a typed value.
//!
//! A [`Node`] is one key of the tree the dotted keys form: its own value (`foo.pool = ...`, if
//! set) and the view of the keys below it (`foo.pool.*`). Scalars read the value; structs and
//! maps read the keys below. Every error leaves here as a [`ConfigError`] naming the full key.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use serde::de::value::{SeqDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::error::{ConfigError, ValueError};
use crate::raw::ConfigView;
use crate::secret;
use crate::value::{
    self, ENDPOINT_MARKER, IntegerBounds, NOT_A_WHOLE_NUMBER, PERCENT_MARKER, TIMESPAN_MARKER,
    Value,
};
use crate::warning::{ConfigWarning, UnknownKeys};

/// Deserialises a `T` from the keys under `view`; unknown keys are errors or warnings, as
/// `unknown_keys` says.
pub(crate) fn from_view<T: DeserializeOwned>(
    view: &ConfigView<'_>,
    unknown_keys: UnknownKeys,
) -> Result<(T, Vec<ConfigWarning>), ConfigError> {
    let unknown = match unknown_keys {
        UnknownKeys::Reject => Unknown::Reject,
        UnknownKeys::Warn => Unknown::Collect(Rc::default()),
    };
    let root = Node {
        key: view.path().to_owned(),
        value: None,
        children: view.clone(),
        unknown: unknown.clone(),
    };
    let parsed = root
        .deserialize_seed(PhantomData::<T>)
        .map_err(|error| error.into_config_error(view.path(), None))?;
    Ok((parsed, unknown.into_warnings()))
}

/// What to do with a key no field reads: fail, or note it and go on.
#[derive(Clone)]
enum Unknown {
    Reject,
    Collect(Rc<RefCell<Vec<ConfigWarning>>>),
}

impl Unknown {
    /// Reports the unknown `key`: an error, or a warning (once, however often it is met).
    fn report(&self, key: String, suggestion: Option<String>) -> Result<(), DeError> {
        match self {
            Self::Reject => Err(DeError::Config(ConfigError::UnknownKey { key, suggestion })),
            Self::Collect(warnings) => {
                let mut warnings = warnings.borrow_mut();
                if !warnings.iter().any(|warning| warning.key() == key) {
                    warnings.push(ConfigWarning::UnknownKey { key, suggestion });
                }
                Ok(())
            }
        }
    }

    fn into_warnings(self) -> Vec<ConfigWarning> {
        match self {
            Self::Reject => Vec::new(),
            Self::Collect(warnings) => warnings.take(),
        }
    }
}

/// The deserializer's error: a finished [`ConfigError`], or an error raised by serde or by a
/// type's own `Deserialize` impl that does not know its key yet. The node that called the
/// visitor adds the key (and the value) on the way out.
#[derive(Debug)]
pub(crate) enum DeError {
    Config(ConfigError),
    Custom(String),
    MissingField(String),
}

impl DeError {
    /// Completes an error raised while deserialising the node `key`, whose value (if it has
    /// one) is `value`.
    fn into_config_error(self, key: &str, value: Option<&Value>) -> ConfigError {
        match self {
            Self::Config(error) => error,
            Self::MissingField(field) => ConfigError::Missing {
                key: join(key, &field),
            },
            Self::Custom(message) => match value {
                Some(value) => {
                    let shown = value.to_string();
                    let raw = value.as_str().unwrap_or(&shown);
                    let reason = secret::redact_message(key, Some(raw), &message);
                    ConfigError::InvalidValue {
                        key: key.to_owned(),
                        error: ValueError::new("value", &shown, reason).redacted_for(key),
                    }
                }
                None => ConfigError::Invalid {
                    key: key.to_owned(),
                    message: secret::redact_message(key, None, &message),
                },
            },
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(error) => error.fmt(f),
            Self::Custom(message) => f.write_str(message),
            Self::MissingField(field) => write!(f, "missing field `{field}`"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::MissingField(field.to_owned())
    }
}

/// One key of the configuration tree.
struct Node<'a> {
    /// The full key, prefix included (`foo.pool`); a list item's key ends with its index
    /// (`foo.hosts[1]`).
    key: String,
    /// The value set for exactly this key, if any.
    value: Option<Cow<'a, Value>>,
    /// The keys below this one.
    children: ConfigView<'a>,
    /// What an unknown key below this one is.
    unknown: Unknown,
}

impl<'a> Node<'a> {
    fn child(view: &ConfigView<'a>, segment: &str, unknown: &Unknown) -> Self {
        Node {
            key: view.full_key(segment),
            value: view.get(segment).map(Cow::Borrowed),
            children: view.prefix(segment),
            unknown: unknown.clone(),
        }
    }

    /// Deserialises `seed` from this node. Errors that a type's own `Deserialize` impl raises
    /// after reading the node (`u32::deserialize(d)?` then a check) are completed here, with the
    /// node's key and value.
    fn deserialize_seed<'de, S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, DeError> {
        let key = self.key.clone();
        let value = self.value.clone();
        seed.deserialize(self)
            .map_err(|error| DeError::Config(error.into_config_error(&key, value.as_deref())))
    }

    fn leaf(key: String, value: Cow<'a, Value>, unknown: &Unknown) -> Self {
        Node {
            key,
            value: Some(value),
            children: ConfigView::empty(),
            unknown: unknown.clone(),
        }
    }

    /// Completes an error from a visitor called on this node.
    fn finish<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|error| {
            DeError::Config(error.into_config_error(&self.key, self.value.as_deref()))
        })
    }

    fn invalid(&self, type_name: &'static str, reason: impl Into<String>) -> DeError {
        let shown = self
            .value
            .as_deref()
            .map(Value::to_string)
            .unwrap_or_default();
        DeError::Config(ConfigError::InvalidValue {
            key: self.key.clone(),
            error: ValueError::new(type_name, &shown, reason).redacted_for(&self.key),
        })
    }

    fn value_error(&self, error: ValueError) -> DeError {
        DeError::Config(ConfigError::InvalidValue {
            key: self.key.clone(),
            error: error.redacted_for(&self.key),
        })
    }

    fn missing(&self) -> DeError {
        DeError::Config(ConfigError::Missing {
            key: self.key.clone(),
        })
    }

    /// True when this key is set to something other than an empty string.
    fn has_value(&self) -> bool {
        match self.value.as_deref() {
            None => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        }
    }

    /// The value of a key that holds one value: keys below it are unknown, and an empty value is
    /// not set.
    fn scalar(&self) -> Result<&Value, DeError> {
        for child in self.children.keys() {
            self.unknown.report(self.children.full_key(child), None)?;
        }
        match self.value.as_deref() {
            Some(value) if self.has_value() => Ok(value),
            _ => Err(self.missing()),
        }
    }

    /// The value as text, for a type parsed from a string; a list is an error.
    fn text(&self, type_name: &'static str) -> Result<Cow<'_, str>, DeError> {
        match self.scalar()? {
            Value::String(s) => Ok(Cow::Borrowed(s)),
            Value::List(_) => Err(self.invalid(type_name, "expected a single value, found a list")),
            other => Ok(Cow::Owned(other.to_string())),
        }
    }

    /// A key read as a struct or a map must not also have a value of its own.
    fn reject_value(&self) -> Result<(), DeError> {
        if self.has_value() {
            let reason = format!("expected keys under {}.*, not a value", self.key);
            return Err(self.invalid("value", reason));
        }
        Ok(())
    }

    /// The distinct first segments of the keys below this one.
    fn segments(&self) -> BTreeSet<&'a str> {
        self.children
            .keys()
            .map(|key| key.split_once('.').map_or(key, |(first, _)| first))
            .collect()
    }

    /// Every key below this one should start with a field name; the others are reported.
    fn check_fields(&self, fields: &[&str]) -> Result<(), DeError> {
        for key in self.children.keys() {
            let (first, rest) = match key.split_once('.') {
                Some((first, rest)) => (first, Some(rest)),
                None => (key, None),
            };
            if fields.contains(&first) {
                continue;
            }
            let suggestion = nearest(first, fields).map(|field| match rest {
                Some(rest) => self.children.full_key(&format!("{field}.{rest}")),
                None => self.children.full_key(field),
            });
            self.unknown
                .report(self.children.full_key(key), suggestion)?;
        }
        Ok(())
    }

    fn integer<T: IntegerBounds + TryFrom<i128>>(&self) -> Result<T, DeError> {
        let n = match self.scalar()? {
            Value::Integer(i) => i128::from(*i),
            Value::String(s) => {
                value::parse_whole_number(s).map_err(|reason| self.invalid("integer", reason))?
            }
            _ => return Err(self.invalid("integer", NOT_A_WHOLE_NUMBER)),
        };
        T::try_from(n).map_err(|_| self.invalid("integer", value::out_of_range::<T>()))
    }

    fn float(&self) -> Result<f64, DeError> {
        match self.scalar()? {
            Value::Float(x) => Ok(*x),
            // Precision beyond 2^53 is lost, as it is when Python reads "12345678901234567" as a
            // float.
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => Ok(*i as f64),
            Value::String(s) => value::parse_float(s).map_err(|error| self.value_error(error)),
            _ => Err(self.invalid("float", "expected a number")),
        }
    }

    fn timespan(&self) -> Result<Duration, DeError> {
        let text = self.text("timespan")?;
        value::parse_timespan(&text).map_err(|error| self.value_error(error))
    }

    /// The items of a list, or of a comma-separated string (baseplate's `TupleOf`); a single
    /// other value is a list of one.
    fn items(&self) -> Result<Vec<Cow<'a, Value>>, DeError> {
        if let Value::String(s) = self.scalar()? {
            let items: Vec<_> = s
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Cow::Owned(Value::from(item)))
                .collect();
            if items.is_empty() {
                return Err(self.invalid("list", "no values provided"));
            }
            return Ok(items);
        }
        Ok(match &self.value {
            Some(Cow::Borrowed(value)) => {
                let value: &'a Value = value;
                match value {
                    Value::List(items) => items.iter().map(Cow::Borrowed).collect(),
                    other => vec![Cow::Borrowed(other)],
                }
            }
            Some(Cow::Owned(Value::List(items))) => items.iter().cloned().map(Cow::Owned).collect(),
            Some(Cow::Owned(other)) => vec![Cow::Owned(other.clone())],
            None => return Err(self.missing()),
        })
    }
}

macro_rules! deserialize_integer {
    ($($method:ident => $visit:ident($ty:ty),)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let n: $ty = self.integer()?;
            self.finish(visitor.$visit(n))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Node<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if !self.has_value() && !self.children.is_empty() {
            return self.deserialize_map(visitor);
        }
        let result = match self.scalar()? {
            Value::String(s) => visitor.visit_str(s),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Float(x) => visitor.visit_f64(*x),
            Value::Boolean(b) => visitor.visit_bool(*b),
            Value::List(_) => return self.deserialize_seq(visitor),
        };
        self.finish(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = match self.scalar()? {
            Value::Boolean(b) => *b,
            Value::String(s) => value::parse_boolean(s).map_err(|e| self.value_error(e))?,
            _ => return Err(self.invalid("boolean", "expected true or false")),
        };
        self.finish(visitor.visit_bool(b))
    }

    deserialize_integer! {
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
        deserialize_i128 => visit_i128(i128),
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_u128 => visit_u128(u128),
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let x = self.float()?;
        if x.is_finite() && x.abs() > f64::from(f32::MAX) {
            return Err(self.invalid("float", "out of range for f32"));
        }
        // In range (or not finite) per the check above, so only precision is lost.
        #[allow(clippy::cast_possible_truncation)]
        let x = x as f32;
        self.finish(visitor.visit_f32(x))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let x = self.float()?;
        self.finish(visitor.visit_f64(x))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let text = self.text("character")?;
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => self.finish(visitor.visit_char(c)),
            _ => Err(self.invalid("character", "expected a single character")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = visitor.visit_str(&self.text("string")?);
        self.finish(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = visitor.visit_bytes(self.text("string")?.as_bytes());
        self.finish(result)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Baseplate's `Optional`: a missing key and an empty value both mean "not set".
        if !self.has_value() && self.children.is_empty() {
            self.finish(visitor.visit_none())
        } else {
            // Whoever handed out this node completes the errors (see `deserialize_seed`).
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.finish(visitor.visit_unit())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // This crate's own types: parse here, so that their errors name the type and the key.
        let parsed = match name {
            TIMESPAN_MARKER => Some(self.timespan().map(|_| ())),
            PERCENT_MARKER => Some(
                value::parse_percent(&self.text("percent")?)
                    .map(|_| ())
                    .map_err(|error| self.value_error(error)),
            ),
            ENDPOINT_MARKER => Some(
                value::parse_endpoint(&self.text("endpoint")?)
                    .map(|_| ())
                    .map_err(|error| self.value_error(error)),
            ),
            _ => None,
        };
        match parsed {
            Some(checked) => {
                checked?;
                let text = self.text("string")?;
                let result = visitor.visit_newtype_struct(StrDeserializer::<DeError>::new(&text));
                self.finish(result)
            }
            // Whoever handed out this node completes the errors (see `deserialize_seed`).
            None => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items = self.items()?;
        let result = visitor.visit_seq(Items {
            key: &self.key,
            items: items.into_iter().enumerate(),
            unknown: &self.unknown,
        });
        self.finish(result)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.reject_value()?;
        let result = visitor.visit_map(Entries {
            view: &self.children,
            segments: self.segments().into_iter(),
            current: None,
            typed_keys: true,
            unknown: &self.unknown,
        });
        self.finish_group(result)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == "Duration" && fields == ["secs", "nanos"] {
            // `std::time::Duration`, read from a timespan.
            let duration = self.timespan()?;
            let parts = [duration.as_secs(), u64::from(duration.subsec_nanos())];
            let seq = SeqDeserializer::<_, DeError>::new(parts.into_iter());
            return self.finish(visitor.visit_seq(seq));
        }
        self.reject_value()?;
        self.check_fields(fields)?;
        // A key set to an empty string is not set: leaving it out lets serde apply the field's
        // default, or `None`, or report it as required, as baseplate's `Optional` does. Unknown
        // keys that were only warned about are left out too, so that no visitor sees them.
        let segments: BTreeSet<&str> = self
            .segments()
            .into_iter()
            .filter(|segment| {
                let child = Node::child(&self.children, segment, &self.unknown);
                fields.contains(segment) && (child.has_value() || !child.children.is_empty())
            })
            .collect();
        let result = visitor.visit_map(Entries {
            view: &self.children,
            segments: segments.into_iter(),
            current: None,
            typed_keys: false,
            unknown: &self.unknown,
        });
        self.finish_group(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = visitor.visit_enum(StrDeserializer::<DeError>::new(&self.text("value")?));
        self.finish(result)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl Node<'_> {
    /// Completes an error from a struct or map visitor: a missing field is named under this
    /// key, and any other error is about this key as a whole.
    fn finish_group<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|error| match error {
            DeError::MissingField(field) => DeError::Config(ConfigError::Missing {
                key: self.children.full_key(&field),
            }),
            other => DeError::Config(other.into_config_error(&self.key, None)),
        })
    }
}

/// The entries of a struct (its present fields) or of a map (every first segment).
struct Entries<'v, 'a, I> {
    view: &'v ConfigView<'a>,
    segments: I,
    current: Option<&'a str>,
    /// Map keys are deserialised like values (so `HashMap<u16, _>` parses its keys); struct
    /// field names are plain identifiers.
    typed_keys: bool,
    unknown: &'v Unknown,
}

impl<'de, 'a, I: Iterator<Item = &'a str>> de::MapAccess<'de> for Entries<'_, 'a, I> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(segment) = self.segments.next() else {
            return Ok(None);
        };
        self.current = Some(segment);
        if self.typed_keys {
            let key = Node::leaf(
                self.view.full_key(segment),
                Cow::Owned(Value::from(segment)),
                self.unknown,
            );
            key.deserialize_seed(seed).map(Some)
        } else {
            seed.deserialize(segment.into_deserializer()).map(Some)
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, DeError> {
        let segment = self
            .current
            .take()
            .ok_or_else(|| DeError::Custom("a value was asked for before its key".to_owned()))?;
        Node::child(self.view, segment, self.unknown).deserialize_seed(seed)
    }
}

/// The items of a list.
struct Items<'k, I> {
    key: &'k str,
    items: I,
    unknown: &'k Unknown,
}

impl<'de, 'a, I: ExactSizeIterator<Item = (usize, Cow<'a, Value>)>> de::SeqAccess<'de>
    for Items<'_, I>
{
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((index, item)) => Node::leaf(format!("{}[{index}]", self.key), item, self.unknown)
                .deserialize_seed(seed)
                .map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// Joins a key and a segment with a dot (just the segment under the root).
fn join(key: &str, segment: &str) -> String {
    if key.is_empty() {
        segment.to_owned()
    } else {
        format!("{key}.{segment}")
    }
}

/// The field most like `unknown`, if it is close enough to be a likely typo.
///
/// Two measures, either of which may find a name close: Jaro-Winkler weighs a shared start, the
/// usual shape of a mistyped config key (`max_conections`); normalized Damerau-Levenshtein
/// catches a swap in a short name (`ulr`), which Jaro's matching window misses. The thresholds
/// accept a slip or two in a word and reject unrelated names.
fn nearest<'f>(unknown: &str, fields: &[&'f str]) -> Option<&'f str> {
    const JARO_WINKLER_THRESHOLD: f64 = 0.8;
    const DAMERAU_THRESHOLD: f64 = 0.6;
    let unknown = unknown.to_lowercase();
    fields
        .iter()
        .filter_map(|field| {
            let field_lower = field.to_lowercase();
            let jaro_winkler = strsim::jaro_winkler(&unknown, &field_lower);
            let damerau = strsim::normalized_damerau_levenshtein(&unknown, &field_lower);
            let close = jaro_winkler >= JARO_WINKLER_THRESHOLD || damerau >= DAMERAU_THRESHOLD;
            close.then_some((*field, jaro_winkler + damerau))
        })
        .fold(None, |best: Option<(&str, f64)>, candidate| match best {
            Some(best) if best.1 >= candidate.1 => Some(best),
            _ => Some(candidate),
        })
        .map(|(field, _)| field)
}

#[cfg(test)]
mod tests;
