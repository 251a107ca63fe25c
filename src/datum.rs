//! Values that cross the SQL boundary untouched. jsonb values and table rows stay PostgreSQL
//! datums: no text round trip through serde on the hot path.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// A jsonb value kept as its datum (valid for the memory context it was created in).
#[derive(Clone, Copy, Debug)]
pub struct Jsonb(pub pg_sys::Datum);

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(Jsonb(datum))
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        unsafe { arg.unbox_arg_using_from_datum().unwrap() }
    }
}

unsafe impl BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}

/// A jsonb[] value kept as its datum.
#[derive(Clone, Copy, Debug)]
pub struct JsonbArray(pub pg_sys::Datum);

impl JsonbArray {
    /// Number of elements (all dimensions), like `cardinality()`.
    pub fn len(&self) -> usize {
        unsafe {
            let array = pg_sys::pg_detoast_datum(self.0.cast_mut_ptr()) as *mut pg_sys::ArrayType;
            let ndim = (*array).ndim;
            let dims =
                (array as *const u8).add(std::mem::size_of::<pg_sys::ArrayType>()) as *const i32;
            (0..ndim as usize)
                .map(|i| *dims.add(i) as usize)
                .product::<usize>()
                * usize::from(ndim > 0)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FromDatum for JsonbArray {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(JsonbArray(datum))
    }
}

impl IntoDatum for JsonbArray {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBARRAYOID
    }
}

pgrx::impl_sql_translatable!(JsonbArray, "jsonb[]");

unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArray {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        unsafe { arg.unbox_arg_using_from_datum().unwrap() }
    }
}

/// Any datum, taken as it is (used for composite rows read through SPI).
#[derive(Clone, Copy, Debug)]
pub struct RawDatum(pub pg_sys::Datum);

impl FromDatum for RawDatum {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(RawDatum(datum))
    }
}

impl IntoDatum for RawDatum {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::RECORDOID
    }
    fn is_compatible_with(_: pg_sys::Oid) -> bool {
        true
    }
}

/// Declares a value that is one row of an existing composite type (a table's row type).
macro_rules! row_type {
    ($(#[$doc:meta])* $name:ident, $sql:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name(pub pg_sys::Datum);

        impl IntoDatum for $name {
            fn into_datum(self) -> Option<pg_sys::Datum> {
                Some(self.0)
            }
            fn type_oid() -> pg_sys::Oid {
                pg_sys::RECORDOID
            }
        }

        pgrx::impl_sql_translatable!($name, $sql);

        unsafe impl BoxRet for $name {
            unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> pgrx::datum::Datum<'fcx> {
                unsafe { fcinfo.return_raw_datum(self.0) }
            }
        }
    };
}

row_type!(
    /// A row of `pgflow.flows`.
    FlowRow, "pgflow.flows");
row_type!(
    /// A row of `pgflow.steps`.
    StepRow, "pgflow.steps");
row_type!(
    /// A row of `pgflow.runs`.
    RunRow, "pgflow.runs");
row_type!(
    /// A row of `pgflow.step_tasks`.
    TaskRow, "pgflow.step_tasks");
row_type!(
    /// A `pgflow.step_task_record`.
    TaskRecord, "pgflow.step_task_record");
row_type!(
    /// A `pgmq.message_record`.
    MessageRecord, "pgmq.message_record");
