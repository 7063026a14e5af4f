//! Service discovery: list a project's services
//! (`GET /v1/{project_id}/services`) and pick the ones a source follows by
//! name glob and status.
//!
//! The list is paged with `offset`, which has the same open question as the
//! events API (pages or records?), and a server may serve fewer rows than
//! `limit`. So the listing detects the offset unit with one probe, pages by
//! the served size, stops on `total_count` (never on a short page) and
//! keeps each service once. A server that ignores `offset` or lies in
//! `total_count` cannot make it page for ever: a page that brings no service
//! not seen before ends the listing, and it asks at most
//! `ceil(total_count / served) + 2` pages.
//!
//! API: "Obtaining Services" (<https://docs.otc.t-systems.com/modelarts/api-ref/>).

use crate::client::{ModelArtsClient, ServiceInfo};
use crate::error::SourceError;
use crate::settings::Discover;
use std::collections::HashSet;
use tracing::{debug, warn};

/// Every service of the project.
pub async fn list_services(
    client: &ModelArtsClient,
    page_size: u32,
) -> Result<Vec<ServiceInfo>, SourceError> {
    let limit = page_size.clamp(1, 1000);
    let first = client.services(0, limit).await?;
    let total = first.total_count;
    let served = first.services.len() as u64;
    let mut seen = HashSet::new();
    let mut services = Vec::new();
    let mut keep = |page: Vec<ServiceInfo>, services: &mut Vec<ServiceInfo>| {
        for service in page {
            if seen.insert(service.service_id.clone()) {
                services.push(service);
            }
        }
    };
    keep(first.services, &mut services);
    if served == 0 || served >= total {
        return Ok(services);
    }
    // A page server has nothing at page ceil(T / S); a record server has
    // rows at record ceil(T / S). Record offsets k * S suit both record
    // servers (plain and floored to a page).
    let probe = total.div_ceil(served);
    let by_pages = served > 1 && client.services(probe, limit).await?.services.is_empty();
    debug!(total, served, by_pages, "Listing services page by page.");
    let mut page = 1u64;
    let most = total.div_ceil(served).saturating_add(2);
    while (services.len() as u64) < total && page.saturating_mul(served) < total {
        if page >= most {
            warn!(
                total,
                served,
                pages = page,
                "The services list would take more pages than its total_count justifies; ending the listing."
            );
            break;
        }
        let offset = if by_pages {
            page
        } else {
            page.saturating_mul(served)
        };
        let next = client.services(offset, limit).await?;
        if next.services.is_empty() {
            break;
        }
        let before = services.len();
        keep(next.services, &mut services);
        if services.len() == before {
            warn!(
                offset,
                total,
                "A page of the services list brought no service not listed before (the server ignores offset or overstates total_count); ending the listing."
            );
            break;
        }
        page += 1;
    }
    Ok(services)
}

/// Whether `discover` selects the service: its name matches the glob (if
/// any) and its status is listed (if any are).
pub fn matches(discover: &Discover, service: &ServiceInfo) -> bool {
    let name_ok = discover.name.as_deref().is_none_or(|glob| {
        glob::Pattern::new(glob).is_ok_and(|pattern| pattern.matches(&service.service_name))
    });
    let status_ok = discover.status.is_empty()
        || discover
            .status
            .iter()
            .any(|s| s.eq_ignore_ascii_case(&service.status));
    name_ok && status_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, status: &str) -> ServiceInfo {
        ServiceInfo {
            service_id: format!("id-{name}"),
            service_name: name.to_owned(),
            status: status.to_owned(),
        }
    }

    #[test]
    fn glob_and_status_select_services() {
        let discover = Discover {
            name: Some("prod-*".to_owned()),
            status: vec!["running".to_owned(), "failed".to_owned()],
        };
        assert!(matches(&discover, &service("prod-ocr", "running")));
        assert!(matches(&discover, &service("prod-ocr", "FAILED")));
        assert!(!matches(&discover, &service("prod-ocr", "stopped")));
        assert!(!matches(&discover, &service("dev-ocr", "running")));
    }

    #[test]
    fn an_empty_filter_selects_everything() {
        assert!(matches(
            &Discover::default(),
            &service("anything", "deploying")
        ));
        let by_name = Discover {
            name: Some("svc-?".to_owned()),
            status: Vec::new(),
        };
        assert!(matches(&by_name, &service("svc-1", "stopped")));
        assert!(!matches(&by_name, &service("svc-10", "stopped")));
    }
}
