//! Derive macros of [`multiprocess`](https://docs.rs/multiprocess); use them
//! through that crate (`multiprocess::TaskReturn`), not directly.

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input, parse_quote};

/// Derives `multiprocess::TaskReturn` for a serde type: a pool or executor
/// task may then return it, and the value itself is the task's result.
///
/// Generic types get the impl wherever the type is
/// `Serialize + DeserializeOwned + Send + 'static`. See
/// `multiprocess::TaskReturn` for an example.
#[proc_macro_derive(TaskReturn)]
pub fn derive_task_return(input: TokenStream) -> TokenStream {
    let mut input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    input
        .generics
        .make_where_clause()
        .predicates
        .push(parse_quote! {
            Self: ::multiprocess::__serde::Serialize
                + ::multiprocess::__serde::de::DeserializeOwned
                + ::core::marker::Send
                + 'static
        });
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        #[automatically_derived]
        impl #impl_generics ::multiprocess::TaskReturn for #name #type_generics #where_clause {
            type Output = Self;
            #[inline]
            fn into_result(self) -> ::core::result::Result<Self, ::std::string::String> {
                ::core::result::Result::Ok(self)
            }
        }
    }
    .into()
}
