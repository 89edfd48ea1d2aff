//! The tidy check (lint suite): keeps the host program's structure what ARCHITECTURE.md says.
//!
//! - Layers: `host/src/<top>/` belongs to a layer (`LAYERS`); a module may use its own layer
//!   and the ones below it, never one above (commands → features → site → kit).
//! - No import cycle between host modules (one module per file; `mod.rs` is its folder's).
//! - clap lives in `commands/` (and `main.rs`) only: features take typed options.
//! - Every host module opens with a `//!` comment saying what it is for.
//! - No function shipped to hosts is longer than `MAX_FN_LINES` (tests are not shipped).
//! - Every repository path ARCHITECTURE.md names exists.
//!
//! It reads the sources with `syn`, so a path in an expression, a type or a `use` counts the
//! same, and so does one inside a macro call (`format!`, `bail!`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use camino::{Utf8Path, Utf8PathBuf};
use syn::visit::Visit;

/// The host program's layers, top first, and the folders (top-level modules) of each.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("commands", &["commands"]),
    (
        "features",
        &[
            "codedeploy",
            "release",
            "database",
            "tls",
            "secrets",
            "environments",
        ],
    ),
    ("site", &["site"]),
    ("kit", &["kit"]),
];

/// The longest function the host program may ship, in lines from `fn` to its closing brace.
pub const MAX_FN_LINES: usize = 80;

/// What the check looked at, for the lint suite's line.
#[derive(Debug)]
pub struct Summary {
    /// Host modules (files).
    pub modules: usize,
    /// Distinct uses of one host module by another.
    pub edges: usize,
    /// Repository paths ARCHITECTURE.md names.
    pub paths: usize,
}

/// Runs every check on the repository at `root`; the error lists every finding.
pub fn check(root: &Utf8Path) -> anyhow::Result<Summary> {
    let graph = Graph::read(root)?;
    let mut problems = graph.problems();
    let (paths, missing) = architecture_paths(root)?;
    problems.extend(missing);
    anyhow::ensure!(
        problems.is_empty(),
        "the host program's structure is not what ARCHITECTURE.md says:\n  - {}",
        problems.join("\n  - ")
    );
    Ok(Summary {
        modules: graph.modules.len(),
        edges: graph.edges.len(),
        paths,
    })
}

/// A module: its path below the crate root (`["site", "stack"]`).
type ModPath = Vec<String>;

/// One host module's file and what the checks need of it.
struct Module {
    file: Utf8PathBuf,
    has_doc: bool,
    long_fns: Vec<(String, usize, usize)>,
    uses_clap: Option<usize>,
}

/// The host modules and which uses which (with the first line that does).
struct Graph {
    modules: BTreeMap<ModPath, Module>,
    edges: BTreeMap<(ModPath, ModPath), usize>,
}

impl Graph {
    /// Reads `<root>/host/src`.
    fn read(root: &Utf8Path) -> anyhow::Result<Graph> {
        let src = root.join("host/src");
        let src = src.as_path();
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(src).sort_by_file_name() {
            let entry = entry?;
            let path = Utf8Path::from_path(entry.path()).context("a non-UTF-8 path")?;
            if path.extension() == Some("rs") {
                files.push((module_path(src, path)?, path.to_owned()));
            }
        }
        let known: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();
        let mut modules = BTreeMap::new();
        let mut edges = BTreeMap::new();
        for (path, file) in files {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
            let ast = syn::parse_file(&text).with_context(|| format!("cannot parse {file}"))?;
            let mut visitor = Uses {
                here: path.clone(),
                children: ast
                    .items
                    .iter()
                    .filter_map(|i| match i {
                        syn::Item::Mod(m) if m.content.is_none() => Some(m.ident.to_string()),
                        _ => None,
                    })
                    .collect(),
                found: Vec::new(),
                long_fns: Vec::new(),
                clap: None,
            };
            visitor.visit_file(&ast);
            for (target, line) in &visitor.found {
                if let Some(target) = longest_known(&known, target)
                    && target != path
                {
                    edges.entry((path.clone(), target)).or_insert(*line);
                }
            }
            let has_doc = ast
                .attrs
                .iter()
                .any(|a| matches!(a.style, syn::AttrStyle::Inner(_)) && a.path().is_ident("doc"));
            modules.insert(
                path,
                Module {
                    file: file.strip_prefix(root).unwrap_or(&file).to_owned(),
                    has_doc,
                    long_fns: visitor.long_fns,
                    uses_clap: visitor.clap,
                },
            );
        }
        Ok(Graph { modules, edges })
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for ((from, to), line) in &self.edges {
            if let (Some(a), Some(b)) = (layer_of(from), layer_of(to))
                && b < a
            {
                problems.push(format!(
                    "{}:{line}: {} ({}) uses {} ({}), a layer above it: move what both need down, or the caller up",
                    self.modules[from].file,
                    name(from),
                    LAYERS[a].0,
                    name(to),
                    LAYERS[b].0
                ));
            }
        }
        for (path, module) in &self.modules {
            if !path.is_empty() && layer_of(path).is_none() {
                problems.push(format!(
                    "{}: {} is in no layer: put it under one of {}",
                    module.file,
                    name(path),
                    LAYERS
                        .iter()
                        .flat_map(|(_, tops)| tops.iter().map(|t| format!("{t}/")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if !module.has_doc {
                problems.push(format!(
                    "{}: {} has no `//!` comment saying what it is for",
                    module.file,
                    name(path)
                ));
            }
            for (function, line, lines) in &module.long_fns {
                problems.push(format!(
                    "{}:{line}: fn {function} is {lines} lines, more than {MAX_FN_LINES}: split it into steps that say what they do",
                    module.file
                ));
            }
            if let Some(line) = module.uses_clap
                && path.first().map(String::as_str) != Some("commands")
                && !path.is_empty()
            {
                problems.push(format!(
                    "{}:{line}: {} uses clap, which lives in commands/ only: take typed options, and parse flags in the command",
                    module.file,
                    name(path)
                ));
            }
        }
        let siblings = self.sibling_edges();
        for cycle in self.cycles() {
            let uses: Vec<String> = cycle
                .iter()
                .zip(cycle.iter().cycle().skip(1))
                .map(|(from, to)| {
                    let (file, line) = &siblings[&(from.clone(), to.clone())];
                    format!("{}:{line} uses {}", self.modules[file].file, name(to))
                })
                .collect();
            problems.push(format!(
                "an import cycle: {} ({}): one of them must not know the other",
                cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .map(name)
                    .collect::<Vec<_>>()
                    .join(" → "),
                uses.join("; ")
            ));
        }
        problems
    }

    /// The uses between siblings: a use of `a::x::y` by `b::z` is one of `a` by `b` (a folder
    /// is one module to its neighbours), and a folder's `mod.rs` and its own files may use
    /// each other (it re-exports them; they share its items). Each with a use that makes it.
    fn sibling_edges(&self) -> BTreeMap<(ModPath, ModPath), (ModPath, usize)> {
        let mut siblings = BTreeMap::new();
        for ((from, to), line) in &self.edges {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue; // One contains the other.
            }
            let key = (from[..=common].to_vec(), to[..=common].to_vec());
            siblings.entry(key).or_insert((from.clone(), *line));
        }
        siblings
    }

    /// One cycle through each group of sibling modules that reach each other (Tarjan's
    /// strongly connected components, then a path around the group).
    fn cycles(&self) -> Vec<Vec<ModPath>> {
        let edges = self.sibling_edges();
        let mut next: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
        for (from, to) in edges.keys() {
            next.entry(from).or_default().push(to);
        }
        let nodes: Vec<&ModPath> = next.keys().copied().collect();
        let mut found = Vec::new();
        for group in strongly_connected(&nodes, &next) {
            if group.len() < 2 {
                continue;
            }
            // Walk from the first module, staying in the group, until a module repeats.
            let members: BTreeSet<&ModPath> = group.iter().copied().collect();
            let mut path = vec![group[0]];
            loop {
                let last = path[path.len() - 1];
                let step = next[last]
                    .iter()
                    .find(|n| members.contains(*n))
                    .expect("a group's module uses another of the group");
                if let Some(at) = path.iter().position(|p| p == step) {
                    found.push(path[at..].iter().map(|m| (*m).clone()).collect());
                    break;
                }
                path.push(step);
            }
        }
        found
    }
}

/// Tarjan's algorithm: the groups of nodes that reach each other.
fn strongly_connected<'a>(
    nodes: &[&'a ModPath],
    next: &BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
) -> Vec<Vec<&'a ModPath>> {
    struct State<'a> {
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        groups: Vec<Vec<&'a ModPath>>,
    }
    fn visit<'a>(
        v: &'a ModPath,
        next: &BTreeMap<&'a ModPath, Vec<&'a ModPath>>,
        s: &mut State<'a>,
    ) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in next.get(v).map(Vec::as_slice).unwrap_or_default() {
            if !s.index.contains_key(w) {
                visit(w, next, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                group.push(w);
                if w == v {
                    break;
                }
            }
            group.reverse();
            s.groups.push(group);
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        groups: Vec::new(),
    };
    for &v in nodes {
        if !state.index.contains_key(v) {
            visit(v, next, &mut state);
        }
    }
    state.groups
}

/// `site/stack.rs` → `["site", "stack"]`; `site/mod.rs` → `["site"]`; `lib.rs` → `[]`.
fn module_path(src: &Utf8Path, file: &Utf8Path) -> anyhow::Result<ModPath> {
    let relative = file.strip_prefix(src)?;
    let mut parts: Vec<String> = relative.iter().map(str::to_owned).collect();
    let last = parts.pop().unwrap_or_default();
    match last.as_str() {
        "mod.rs" => {}
        "lib.rs" | "main.rs" if parts.is_empty() => {}
        _ => parts.push(last.trim_end_matches(".rs").to_owned()),
    }
    Ok(parts)
}

fn longest_known(known: &BTreeSet<ModPath>, path: &[String]) -> Option<ModPath> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
}

fn layer_of(path: &ModPath) -> Option<usize> {
    let top = path.first()?;
    LAYERS
        .iter()
        .position(|(_, tops)| tops.contains(&top.as_str()))
}

fn name(path: &ModPath) -> String {
    if path.is_empty() {
        "the crate root".to_owned()
    } else {
        path.join("::")
    }
}

/// Collects the host paths one file names, its long functions and its first use of clap.
struct Uses {
    here: ModPath,
    children: BTreeSet<String>,
    found: Vec<(ModPath, usize)>,
    long_fns: Vec<(String, usize, usize)>,
    clap: Option<usize>,
}

impl Uses {
    /// Where a path written in this file points, when it points into this crate.
    fn resolve(&self, segments: &[String], line: usize) -> Option<(ModPath, usize)> {
        let first = segments.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.here.clone(),
            "super" => {
                let mut base = self.here.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
                base.extend(rest.iter().cloned());
                return Some((base, line));
            }
            _ if self.children.contains(first) => {
                let mut base = self.here.clone();
                base.extend(segments.iter().cloned());
                return Some((base, line));
            }
            _ => return None,
        };
        base.extend(segments[1..].iter().cloned());
        Some((base, line))
    }

    fn note(&mut self, segments: Vec<String>, line: usize) {
        if segments.first().map(String::as_str) == Some("clap") && self.clap.is_none() {
            self.clap = Some(line);
        }
        if let Some(found) = self.resolve(&segments, line) {
            self.found.push(found);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                if n.ident != "self" {
                    path.push(n.ident.to_string());
                }
                self.note(path, n.ident.span().start().line);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                self.note(path, r.ident.span().start().line);
            }
            syn::UseTree::Glob(g) => {
                self.note(prefix.clone(), g.star_token.spans[0].start().line);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    /// Macro arguments and attribute lists are tokens: `crate :: a :: b` sequences in them
    /// count as paths (`format!("{}", crate::a::b())`, `#[arg(default_value = crate::X)]`).
    fn tokens(&mut self, tokens: proc_macro2::TokenStream) {
        use proc_macro2::TokenTree;
        let is_colon =
            |t: Option<&TokenTree>| matches!(t, Some(TokenTree::Punct(p)) if p.as_char() == ':');
        let tokens = flatten(tokens);
        let mut i = 0;
        while i < tokens.len() {
            let TokenTree::Ident(id) = &tokens[i] else {
                i += 1;
                continue;
            };
            let line = id.span().start().line;
            let mut segments = vec![id.to_string()];
            let mut j = i + 1;
            while is_colon(tokens.get(j)) && is_colon(tokens.get(j + 1)) {
                let Some(TokenTree::Ident(next)) = tokens.get(j + 2) else {
                    break;
                };
                segments.push(next.to_string());
                j += 3;
            }
            if segments.len() > 1 {
                self.note(segments, line);
            }
            i = j;
        }
    }

    fn function(&mut self, name: &syn::Ident, block: &syn::Block, attrs: &[syn::Attribute]) {
        if is_test(attrs) {
            return;
        }
        let start = name.span().start().line;
        let end = block.brace_token.span.close().end().line;
        let lines = end + 1 - start;
        if lines > MAX_FN_LINES {
            self.long_fns.push((name.to_string(), start, lines));
        }
    }
}

/// `#[test]` or `#[cfg(test)]`: not shipped.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("test")
            || (a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
    })
}

impl<'ast> Visit<'ast> for Uses {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test(&u.attrs) {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        // One segment is a local name or an item of this module (or `crate` in `pub(crate)`).
        if segments.len() > 1 {
            self.note(segments, line);
        }
        syn::visit::visit_path(self, p);
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
    fn visit_attribute(&mut self, a: &'ast syn::Attribute) {
        if let syn::Meta::List(list) = &a.meta {
            self.tokens(list.tokens.clone());
        }
        syn::visit::visit_attribute(self, a);
    }
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        self.function(&f.sig.ident, &f.block, &f.attrs);
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        self.function(&f.sig.ident, &f.block, &f.attrs);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
        if let Some(block) = &f.default {
            self.function(&f.sig.ident, block, &f.attrs);
        }
        syn::visit::visit_trait_item_fn(self, f);
    }
}

/// A token stream with its groups opened, in order.
fn flatten(tokens: proc_macro2::TokenStream) -> Vec<proc_macro2::TokenTree> {
    let mut out = Vec::new();
    for token in tokens {
        match token {
            proc_macro2::TokenTree::Group(g) => out.extend(flatten(g.stream())),
            other => out.push(other),
        }
    }
    out
}

/// The repository paths ARCHITECTURE.md names (in backquotes or as link targets) whose first
/// part is an entry of the repository's root, and the ones that do not exist.
fn architecture_paths(root: &Utf8Path) -> anyhow::Result<(usize, Vec<String>)> {
    let doc = root.join("ARCHITECTURE.md");
    let text = std::fs::read_to_string(&doc).with_context(|| format!("cannot read {doc}"))?;
    let tops: BTreeSet<String> = root
        .read_dir_utf8()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n != "target")
        .collect();
    let quoted = regex::Regex::new(r"`([^`\s]+)`|\]\(([^)\s#]+)").expect("a valid pattern");
    let mut named = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        for c in quoted.captures_iter(line) {
            let path = c.get(1).or(c.get(2)).expect("one group matched").as_str();
            let first = path.split('/').next().unwrap_or_default();
            if path.contains('/') && tops.contains(first) && !path.contains(['<', '*', '{']) {
                named.insert((path.to_owned(), number + 1));
            }
        }
    }
    let missing = named
        .iter()
        .filter(|(path, _)| !root.join(path.trim_end_matches('/')).exists())
        .map(|(path, line)| {
            format!("ARCHITECTURE.md:{line} names {path}, which does not exist: fix the map")
        })
        .collect();
    Ok((named.len(), missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host tree in a temporary directory: `files` are (path under host/src, text).
    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap().to_owned();
        for (path, text) in files {
            let file = root.join("host/src").join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        std::fs::write(
            root.join("ARCHITECTURE.md"),
            "The kit is `host/src/kit/`.\n",
        )
        .unwrap();
        (dir, root)
    }

    const GOOD: &[(&str, &str)] = &[
        (
            "lib.rs",
            "//! root\npub mod commands;\npub mod kit;\npub mod site;\n",
        ),
        (
            "commands/mod.rs",
            "//! verbs\nuse crate::site::stack::Stack;\n#[derive(clap::Parser)]\npub struct A;\n",
        ),
        ("site/mod.rs", "//! site\npub mod stack;\n"),
        (
            "site/stack.rs",
            "//! stack\nuse crate::kit::process;\npub struct Stack;\n",
        ),
        ("kit/mod.rs", "//! kit\npub mod process;\n"),
        ("kit/process.rs", "//! process\npub fn run() {}\n"),
    ];

    fn with(changes: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut files: BTreeMap<&str, &str> = GOOD.iter().copied().collect();
        files.extend(changes.iter().copied());
        files.into_iter().collect()
    }

    fn problems(files: &[(&str, &str)]) -> String {
        let (_dir, root) = tree(files);
        match check(&root) {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_tidy_tree_passes() {
        assert_eq!(problems(GOOD), "");
    }

    #[test]
    fn an_upward_import_fails() {
        let found = problems(&with(&[(
            "kit/process.rs",
            "//! process\npub fn run() { let _ = crate::site::stack::Stack; }\n",
        )]));
        assert!(
            found.contains(
                "kit/process.rs:2: kit::process (kit) uses site::stack (site), a layer above it"
            ),
            "{found}"
        );
        // Inside a macro's arguments too.
        let found = problems(&with(&[(
            "site/stack.rs",
            "//! stack\npub struct Stack;\nfn f() { println!(\"{:?}\", crate::commands::A); }\n",
        )]));
        assert!(
            found.contains("site::stack (site) uses commands (commands)"),
            "{found}"
        );
    }

    #[test]
    fn a_cycle_fails() {
        let found = problems(&with(&[
            ("site/mod.rs", "//! site\npub mod stack;\npub mod swap;\n"),
            (
                "site/stack.rs",
                "//! stack\nuse super::swap::swap;\npub struct Stack;\n",
            ),
            (
                "site/swap.rs",
                "//! swap\nuse super::stack::Stack;\npub fn swap() {}\n",
            ),
        ]));
        assert!(
            found.contains("an import cycle: site::stack → site::swap → site::stack"),
            "{found}"
        );
    }

    #[test]
    fn clap_outside_commands_a_missing_doc_and_a_long_fn_fail() {
        let long = format!(
            "//! process\npub fn run() {{\n{}}}\n",
            "    let _x = 1;\n".repeat(MAX_FN_LINES - 1)
        );
        let long: &'static str = Box::leak(long.into_boxed_str());
        let found = problems(&with(&[
            ("site/stack.rs", "use clap::Args;\npub struct Stack;\n"),
            ("kit/process.rs", long),
        ]));
        assert!(found.contains("site::stack uses clap"), "{found}");
        assert!(
            found.contains("site::stack has no `//!` comment"),
            "{found}"
        );
        assert!(
            found.contains(&format!("fn run is {} lines", MAX_FN_LINES + 1)),
            "{found}"
        );
    }

    #[test]
    fn a_stale_path_in_the_map_fails() {
        let (_dir, root) = tree(GOOD);
        std::fs::write(
            root.join("ARCHITECTURE.md"),
            "See `host/src/kit/process.rs` and [the old one](host/src/install/mod.rs).\n",
        )
        .unwrap();
        let found = format!("{:#}", check(&root).unwrap_err());
        assert!(found.contains("names host/src/install/mod.rs"), "{found}");
        assert!(!found.contains("kit/process.rs"), "{found}");
    }
}
