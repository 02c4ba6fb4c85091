//! The landing page (`GET /`): how to pull, the package source, and the images built so
//! far. Everything that came from outside is escaped.

use super::build::Stored;
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The page for a server reached as `host` (`HOST:PORT`).
pub fn render(host: &str, source: &str, images: &[std::sync::Arc<Stored>]) -> String {
    let h = escape(host);
    let mut rows = String::new();
    for image in images {
        let r = &image.record;
        let _ = writeln!(
            rows,
            "<tr><td><code>{}:{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&r.name),
            escape(&r.key.tag),
            escape(&r.key.arch),
            escape(&r.key.packages.join(" ")),
            escape(&r.digest),
        );
    }
    let built = match images.is_empty() {
        true => "<p id=\"none\">No image has been built yet.</p>".to_string(),
        false => format!(
            "<table id=\"images\">\n<tr><th>Image</th><th>Architecture</th><th>Packages</th><th>Manifest digest</th></tr>\n{rows}</table>"
        ),
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>stevedore serve</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; }}
code, pre {{ background: #f4f4f4; }}
pre {{ padding: 0.5em; overflow-x: auto; }}
td, th {{ text-align: left; padding: 0.2em 0.6em; vertical-align: top; }}
td code {{ word-break: break-all; }}
</style>
</head>
<body>
<h1>stevedore serve</h1>
<p>Container images built on demand by Nix: an image's name is the list of packages it holds.
<code>shell</code> adds bash, coreutils, moreutils and nano; a leading <code>arm64</code> builds for arm64.</p>
<h2>Pulling</h2>
<pre id="pull">skopeo copy --src-tls-verify=false docker://{h}/shell/hello oci:hello:latest
docker pull {h}/shell/git
ctr images pull --plain-http {h}/shell/hello:latest</pre>
<h2>Package source</h2>
<p><code id="source">{source}</code></p>
<h2>Images built</h2>
{built}
</body>
</html>
"#,
        source = escape(source),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_outside_is_escaped() {
        let page = render("<h>:1", "path!/a&b\"<script>", &[]);
        assert!(page.contains("docker://&lt;h&gt;:1/shell/hello"));
        assert!(page.contains("path!/a&amp;b&quot;&lt;script&gt;"));
        assert!(!page.contains("<script>"));
        assert_eq!(escape("'"), "&#39;");
    }
}
