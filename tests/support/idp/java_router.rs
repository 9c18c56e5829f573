//! How a Java servlet container / JAX-RS router reads a request path
//! ([`super::IdpOptions::java_router`]).

/// The path a Java servlet container / JAX-RS router (Keycloak) dispatches on,
/// from the raw request path, in the containers' order:
/// 1. `\` is a separator (Tomcat `ALLOW_BACKSLASH`, Jetty, Undertow);
/// 2. path parameters go: every segment loses `;...` (`/token;jsessionid=x` is
///    `/token`), on the raw path, so an encoded `%3b` stays;
/// 3. percent-decoding, where `%2f` and `%5c` become separators
///    (`ALLOW_ENCODED_SLASH`) and `%2e` a dot; invalid escapes stay as they are;
/// 4. empty segments collapse (`//token` is `/token`);
/// 5. dot segments are resolved (RFC 3986 §5.2.4; `..` never climbs above `/`);
/// 6. a trailing `/` is dropped (JAX-RS matches `/token/` to `@Path("token")`).
pub fn java_route(raw: &str) -> String {
    let raw = raw.replace('\\', "/");
    let no_params: Vec<&str> = raw
        .split('/')
        .map(|seg| seg.split(';').next().unwrap_or(""))
        .collect();
    let no_params = no_params.join("/");
    let bytes = no_params.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                decoded.push(b);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut collapsed = String::with_capacity(decoded.len() + 1);
    for c in decoded.chars() {
        if !(c == '/' && collapsed.ends_with('/')) {
            collapsed.push(c);
        }
    }
    if !collapsed.starts_with('/') {
        collapsed.insert(0, '/');
    }
    let mut out = remove_dot_segments(&collapsed);
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// RFC 3986 §5.2.4, step by step.
pub fn remove_dot_segments(path: &str) -> String {
    let mut input = path.to_string();
    let mut output = String::new();
    fn pop_segment(output: &mut String) {
        match output.rfind('/') {
            Some(i) => output.truncate(i),
            None => output.clear(),
        }
    }
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_string();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_string();
        } else if input.starts_with("/./") {
            input.replace_range(..3, "/");
        } else if input == "/." {
            input = "/".to_string();
        } else if input.starts_with("/../") {
            input.replace_range(..4, "/");
            pop_segment(&mut output);
        } else if input == "/.." {
            input = "/".to_string();
            pop_segment(&mut output);
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input.replace_range(..end, "");
        }
    }
    output
}
