//! Token revocation (RFC 7009).

use http::HeaderMap;

use super::params::{client_identity, is_form, parse_params};
use super::state::Inner;

impl Inner {
    pub(super) fn revoke(&self, headers: &HeaderMap, body: &[u8]) {
        if !is_form(headers) {
            return;
        }
        let Ok(params) = parse_params(body) else {
            return;
        };
        let Ok(Some(client_id)) = client_identity(headers, &params) else {
            return;
        };
        let Some(token) = params.get("token") else {
            return;
        };
        let mut st = self.lock();
        if st
            .refresh
            .get(token)
            .is_some_and(|g| g.client_id == client_id)
        {
            st.refresh.remove(token);
            if let Some(a) = st.paired_access.remove(token) {
                st.access.remove(&a);
            }
        }
        // Access tokens are opaque and carry no client binding here: revoke on sight.
        st.access.remove(token);
    }
}
