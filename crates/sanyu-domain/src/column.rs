//! The domain's closed sets as text columns (feature `sea-orm`): an entity
//! field may be a [`crate::CaseStatus`], a [`crate::RiskLevel`], ... and
//! sea-orm reads and writes it as the text stored today (`as_str`, parsed back
//! with `FromStr`), so each value is converted once, at the column.
//!
//! This does what sea-orm's `DeriveActiveEnum` (`rs_type = "String"`,
//! `db_type = "Text"`) does, written out because the derive's error for an
//! unknown stored value names the Rust enum but not the column; here it reads
//! `column "status": unknown case status `bogus`; expected one of: ...`.
//! The strings keep one home (`as_str`), not a second one in attributes.

#[doc(hidden)]
pub use sea_orm as __sea_orm;

/// Implement the sea-orm column traits for a type with `as_str(self) ->
/// &'static str` and a `FromStr` whose error is `Display`, stored as text.
#[macro_export]
macro_rules! text_column {
    ($($ty:ty),+ $(,)?) => {$(
        impl ::std::convert::From<$ty> for $crate::column::__sea_orm::Value {
            fn from(v: $ty) -> Self {
                $crate::column::__sea_orm::Value::String(Some(v.as_str().to_owned()))
            }
        }

        impl $crate::column::__sea_orm::sea_query::Nullable for $ty {
            fn null() -> $crate::column::__sea_orm::Value {
                $crate::column::__sea_orm::Value::String(None)
            }
        }

        impl $crate::column::__sea_orm::sea_query::ValueType for $ty {
            fn try_from(
                v: $crate::column::__sea_orm::Value,
            ) -> ::std::result::Result<Self, $crate::column::__sea_orm::sea_query::ValueTypeErr> {
                match v {
                    $crate::column::__sea_orm::Value::String(Some(s)) => s
                        .parse()
                        .map_err(|_| $crate::column::__sea_orm::sea_query::ValueTypeErr),
                    _ => Err($crate::column::__sea_orm::sea_query::ValueTypeErr),
                }
            }

            fn type_name() -> String {
                stringify!($ty).to_owned()
            }

            fn array_type() -> $crate::column::__sea_orm::sea_query::ArrayType {
                $crate::column::__sea_orm::sea_query::ArrayType::String
            }

            fn column_type() -> $crate::column::__sea_orm::sea_query::ColumnType {
                $crate::column::__sea_orm::sea_query::ColumnType::Text
            }
        }

        impl $crate::column::__sea_orm::TryGetable for $ty {
            fn try_get_by<I: $crate::column::__sea_orm::ColIdx>(
                res: &$crate::column::__sea_orm::QueryResult,
                idx: I,
            ) -> ::std::result::Result<Self, $crate::column::__sea_orm::TryGetError> {
                let text = <String as $crate::column::__sea_orm::TryGetable>::try_get_by(res, idx)?;
                text.parse().map_err(|e| {
                    $crate::column::__sea_orm::TryGetError::DbErr(
                        $crate::column::__sea_orm::DbErr::Type(format!("column {idx:?}: {e}")),
                    )
                })
            }
        }
    )+};
}

text_column!(
    crate::CaseStatus,
    crate::CaseSubject,
    crate::LadderState,
    crate::RiskLevel,
);
