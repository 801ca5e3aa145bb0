//! Every route the server answers, in one table. The same table yields [`ROUTES`], which
//! a test compares with `openapi.yaml`, so the document cannot drift from the server.

use actix_web::http::Method;
use actix_web::web;

use crate::handlers::{
    blobs, conversations, events, groups, health, messages, problem, sessions, users,
};

/// A resource whose unsupported methods answer a 405 problem, with `Allow` naming the
/// methods it takes.
fn resource(path: &str, allowed: &'static [&'static str]) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || problem::method_not_allowed(allowed)))
}

macro_rules! route_table {
    ($( $path:literal => { $( $method:ident => $handler:path ),+ $(,)? } )*) => {
        /// Method and path of every public route, spelled as in `openapi.yaml`.
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path), )+ )* ];

        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.service(
                resource($path, &[ $( stringify!($method) ),+ ])
                    $( .route(web::method(Method::$method).to($handler)) )+
            ); )*
        }
    };
}

/// The admin listener's routes: probes and metrics, for operators and the balancer.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", &["GET"]).route(web::get().to(health::healthz)))
        .service(resource("/readyz", &["GET"]).route(web::get().to(health::readyz)))
        .service(resource("/metrics", &["GET"]).route(web::get().to(health::metrics)));
}

route_table! {
    "/healthz" => { GET => health::healthz }
    "/readyz" => { GET => health::readyz }
    "/v1/users" => { POST => users::create, GET => users::list }
    "/v1/users/{username}" => { GET => users::get }
    "/v1/usernames/{username}" => { GET => users::availability }
    "/v1/sessions" => { POST => sessions::create }
    "/v1/sessions/current" => { DELETE => sessions::delete_current }
    "/v1/me/key-backup" => { GET => users::key_backup }
    "/v1/me/contacts" => { GET => users::contacts_backup, PUT => users::put_contacts_backup }
    "/v1/messages" => { POST => messages::send }
    "/v1/conversations" => { GET => conversations::list }
    "/v1/conversations/{username}/messages" => { GET => messages::conversation }
    "/v1/conversations/{username}/read" => { PUT => conversations::mark_with }
    "/v1/inbox" => { GET => events::inbox }
    "/v1/events" => { GET => events::stream }
    "/v1/groups" => { POST => groups::create, GET => groups::list }
    "/v1/groups/{name}" => { GET => groups::get }
    "/v1/groups/{name}/members" => { POST => groups::add_member }
    "/v1/groups/{name}/members/{username}" => { DELETE => groups::remove_member }
    "/v1/groups/{name}/admins" => { POST => groups::add_admin }
    "/v1/groups/{name}/messages" => { GET => groups::history }
    "/v1/groups/{name}/statements" => { GET => groups::statements }
    "/v1/groups/{name}/read" => { PUT => conversations::mark_group }
    "/v1/blobs" => { POST => blobs::upload }
    "/v1/blobs/{id}" => { GET => blobs::download }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::ROUTES;

    /// The (method, path) pairs `openapi.yaml` documents.
    fn documented() -> BTreeSet<(String, String)> {
        let text = include_str!("../../openapi.yaml");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("openapi.yaml parses");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1")),
            "openapi.yaml must be OpenAPI 3.1"
        );
        let paths = doc["paths"].as_mapping().expect("paths");
        let mut found = BTreeSet::new();
        for (path, item) in paths {
            let path = path.as_str().expect("path is a string");
            for (method, operation) in item.as_mapping().expect("path item") {
                let method = method.as_str().expect("method").to_uppercase();
                let responses = operation["responses"].as_mapping();
                assert!(
                    responses.is_some_and(|r| !r.is_empty()),
                    "{method} {path} documents no responses"
                );
                found.insert((method, path.to_owned()));
            }
        }
        found
    }

    #[test]
    fn openapi_documents_exactly_the_routes_served() {
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let documented = documented();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in openapi.yaml: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in openapi.yaml but not served: {unserved:?}"
        );
    }

    #[test]
    fn openapi_lists_exactly_the_error_codes_the_server_answers_with() {
        use fastchat_protocol::problem::ErrorCode;

        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../openapi.yaml")).expect("parses");
        let documented: BTreeSet<String> = doc["components"]["schemas"]["Problem"]["properties"]
            ["code"]["enum"]
            .as_sequence()
            .expect("Problem.code lists its values")
            .iter()
            .map(|v| v.as_str().expect("a code").to_owned())
            .collect();
        let answered: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(documented, answered);
    }

    #[test]
    fn every_internal_ref_in_openapi_resolves() {
        let text = include_str!("../../openapi.yaml");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).expect("parses");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for reference in refs {
            let pointer = reference.strip_prefix("#/").expect("internal reference");
            let mut node = &doc;
            for part in pointer.split('/') {
                node = &node[part];
            }
            assert!(!node.is_null(), "{reference} points nowhere");
        }
    }

    fn collect_refs(node: &serde_yaml_ng::Value, out: &mut Vec<String>) {
        match node {
            serde_yaml_ng::Value::Mapping(map) => {
                for (k, v) in map {
                    if k.as_str() == Some("$ref") {
                        out.push(v.as_str().expect("$ref is a string").to_owned());
                    } else {
                        collect_refs(v, out);
                    }
                }
            }
            serde_yaml_ng::Value::Sequence(items) => {
                items.iter().for_each(|v| collect_refs(v, out))
            }
            _ => {}
        }
    }
}
