//! The REST API, `/api/v1`, served by the api role: thin handlers over the services in
//! [`crate::tenancy`] and [`crate::contexts`].
//!
//! Every route is listed once, in [`api_routes!`] below: that one list registers the
//! route with actix and puts it in the OpenAPI document, so the two cannot drift. Each
//! handler's `#[utoipa::path]` names the scope its service checks.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod contexts;
pub mod docs;
pub mod invitations;
pub mod openapi;
pub mod organization;
pub mod pagination;
pub mod reference;
pub mod tasks;
pub mod tools;
pub mod users;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::errors::method_not_allowed_for;

macro_rules! api_routes {
    (routes: [$($module:ident :: $handler:ident),* $(,)?], also_documented: [$($extra:path),* $(,)?]) => {
        /// How many routes [`configure`] registers.
        pub const ROUTE_COUNT: usize = [$(stringify!($handler)),*].len();

        /// Registers every API route, then answers 405 on their paths for other methods.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.service($module::$handler); )*
            method_not_allowed_on_api_paths(cfg);
        }

        /// The OpenAPI document as derived from the handlers, before [`openapi::document`]
        /// completes it.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($module::$handler,)* $($extra,)*))]
        pub struct ApiDoc;
    };
}

api_routes! {
    // The router tries routes in this order: the busiest come first.
    routes: [
        contexts::list_contexts,
        contexts::create_context,
        contexts::get_context,
        contexts::update_context,
        contexts::delete_context,
        contexts::append_items,
        contexts::context_summary,
        tasks::list_tasks,
        tasks::create_task,
        tasks::get_task,
        tasks::task_events,
        tasks::cancel_task,
        tasks::accept_task,
        tasks::reject_task,
        tasks::task_progress,
        tasks::complete_task,
        tasks::fail_task,
        agents::list_agents,
        agents::create_agent,
        agents::next_task,
        agents::agent_inbox,
        agents::agent_heartbeat,
        agents::get_agent,
        agents::update_agent,
        agents::delete_agent,
        agents::activate_agent,
        agents::suspend_agent,
        agents::retire_agent,
        agents::create_agent_key,
        tools::list_tools,
        tools::create_tool,
        tools::get_tool,
        tools::update_tool,
        tools::delete_tool,
        tools::rediscover_tool,
        tools::upload_description,
        tools::list_operations,
        tools::execute_operation,
        tools::tool_health,
        tools::put_my_credential,
        tools::get_my_credential,
        tools::delete_my_credential,
        auth::register_organization,
        auth::login,
        auth::refresh,
        auth::logout,
        auth::me,
        auth::change_password,
        auth::accept_invitation,
        organization::get_organization,
        organization::update_organization,
        users::list_users,
        users::create_user,
        users::get_user,
        users::update_user,
        users::delete_user,
        invitations::list_invitations,
        invitations::create_invitation,
        invitations::revoke_invitation,
        api_keys::list_api_keys,
        api_keys::create_api_key,
        api_keys::get_api_key,
        api_keys::revoke_api_key,
        audit::list_audit,
        docs::openapi_json,
        docs::reference_page,
    ],
    // Served by every listener (see `http::system`).
    also_documented: [
        crate::http::system::live,
        crate::http::system::ready,
        crate::http::system::metrics,
    ]
}

/// A path the API serves, asked with a method it does not take: 405 with `Allow`.
fn method_not_allowed_on_api_paths(cfg: &mut web::ServiceConfig) {
    let Some(paths) = openapi::document()["paths"].as_object() else {
        return;
    };
    for path in paths.keys().filter(|p| p.starts_with("/api/")) {
        cfg.service(web::resource(path.as_str()).to(method_not_allowed));
    }
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let allowed: Vec<String> = openapi::methods_for(req.path())
        .unwrap_or_default()
        .iter()
        .map(|m| m.to_uppercase())
        .collect();
    let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
    method_not_allowed_for(&req, &allowed)
}
