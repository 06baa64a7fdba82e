//! A site's knowledge: its FAQ and facts in Markdown, its product catalog in JSON or CSV, ranked
//! for a visitor's question with BM25.
//!
//! Each Markdown heading starts a passage (the heading is its question, what follows until the
//! next heading its answer); each product is a passage of its own. A question is answered by a
//! passage only when the passage is a good match, measured two ways: its BM25 score, and how much
//! of the question's information it covers (the share of the question's inverse document
//! frequency carried by words the passage holds; a word the knowledge never mentions counts
//! fully against it). "Do you ship to Canada?" is covered by the shipping passage; "What is your
//! warranty on lamps?" is not covered by a lamp, because "warranty" is nowhere.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use bm25::{Language, SearchEngine, SearchEngineBuilder, Tokenizer};
use serde::{Deserialize, Serialize};

/// The largest knowledge file read.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// The most passages a site's knowledge holds.
pub const MAX_PASSAGES: usize = 5000;
/// The least share of a question's information a passage must cover to answer it.
pub const MIN_COVERAGE: f32 = 0.6;

/// Words of questions about any product, indexed with each product so that "how much is the
/// lamp?" is covered by the lamp.
const PRODUCT_WORDS: &str = "price cost costs how much stock available availability in stock buy";

/// Why knowledge could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KnowledgeError {
    /// A file could not be read.
    #[error("{file}: {message}")]
    File {
        /// The file.
        file: String,
        /// What was wrong.
        message: String,
    },
}

fn bad(file: &str, message: impl Into<String>) -> KnowledgeError {
    KnowledgeError::File {
        file: file.to_owned(),
        message: message.into(),
    }
}

/// Where a passage comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// A Markdown file (FAQ, facts): its name.
    Document(String),
    /// A product of the catalog: its index in [`Knowledge::products`].
    Product(usize),
}

/// One answerable piece of knowledge.
#[derive(Clone, Debug, PartialEq)]
pub struct Passage {
    /// Its heading (a question, a product's name).
    pub title: String,
    /// Its text, plain (Markdown reduced to text, links written out).
    pub text: String,
    /// Where it comes from.
    pub origin: Origin,
}

/// A product of the catalog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Its stock-keeping id.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its price.
    #[serde(default)]
    pub price: f64,
    /// The price's currency.
    #[serde(default)]
    pub currency: String,
    /// How many are in stock, when the catalog says.
    #[serde(default)]
    pub stock: Option<i64>,
    /// Its page on the site.
    #[serde(default)]
    pub url: String,
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Its category.
    #[serde(default)]
    pub category: String,
}

impl Product {
    /// "Arc Floor Lamp: 129.00 USD, 12 in stock."
    pub fn summary(&self) -> String {
        let mut s = format!("{}: {:.2} {}", self.name, self.price, self.currency);
        match self.stock {
            Some(0) => s.push_str(", out of stock"),
            Some(n) if n > 0 => s.push_str(&format!(", {n} in stock")),
            _ => {}
        }
        s.push('.');
        if !self.description.is_empty() {
            s.push(' ');
            s.push_str(&self.description);
        }
        if !self.url.is_empty() {
            s.push_str(&format!(" {}", self.url));
        }
        s
    }
}

/// A passage found for a question.
#[derive(Clone, Debug)]
pub struct Hit<'k> {
    /// The passage.
    pub passage: &'k Passage,
    /// Its BM25 score.
    pub score: f32,
    /// The share of the question's information it covers, 0 to 1.
    pub coverage: f32,
}

/// A site's knowledge, indexed.
pub struct Knowledge {
    passages: Vec<Passage>,
    products: Vec<Product>,
    engine: SearchEngine<usize>,
    tokenizer: bm25::DefaultTokenizer,
    /// Each word's passages (stemmed), for coverage.
    terms: Vec<HashSet<String>>,
    /// How many passages hold each word.
    df: HashMap<String, usize>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("passages", &self.passages.len())
            .field("products", &self.products.len())
            .finish()
    }
}

impl Default for Knowledge {
    fn default() -> Self {
        Knowledge::build(Vec::new(), Vec::new())
    }
}

impl Knowledge {
    /// Reads every `*.md`, `*.json` and `*.csv` file of a folder (a catalog is JSON or CSV).
    pub fn load_dir(dir: &Path) -> Result<Knowledge, KnowledgeError> {
        let shown = dir.display().to_string();
        let entries = std::fs::read_dir(dir).map_err(|e| bad(&shown, e.to_string()))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| bad(&shown, e.to_string()))?;
            let path = entry.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !(name.ends_with(".md") || name.ends_with(".json") || name.ends_with(".csv")) {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            if len > MAX_FILE_BYTES as u64 {
                return Err(bad(&name, format!("is larger than {MAX_FILE_BYTES} bytes")));
            }
            let bytes = std::fs::read(&path).map_err(|e| bad(&name, e.to_string()))?;
            let text = String::from_utf8(bytes).map_err(|_| bad(&name, "is not UTF-8 text"))?;
            files.push((name, text));
        }
        files.sort();
        Knowledge::from_files(&files)
    }

    /// Builds the knowledge from (file name, text) pairs: `.md` files are passages, `.json` and
    /// `.csv` files are catalogs.
    pub fn from_files(files: &[(String, String)]) -> Result<Knowledge, KnowledgeError> {
        let mut passages = Vec::new();
        let mut products = Vec::new();
        for (name, text) in files {
            if text.len() > MAX_FILE_BYTES {
                return Err(bad(name, format!("is larger than {MAX_FILE_BYTES} bytes")));
            }
            if name.ends_with(".md") {
                passages.extend(markdown_passages(name, text));
            } else if name.ends_with(".json") {
                products.extend(json_catalog(name, text)?);
            } else if name.ends_with(".csv") {
                products.extend(csv_catalog(name, text)?);
            } else {
                return Err(bad(
                    name,
                    "is neither Markdown (.md) nor a catalog (.json, .csv)",
                ));
            }
        }
        for (i, p) in products.iter().enumerate() {
            passages.push(Passage {
                title: p.name.clone(),
                text: p.summary(),
                origin: Origin::Product(i),
            });
        }
        if passages.len() > MAX_PASSAGES {
            return Err(bad(
                "knowledge",
                format!("holds {} passages; at most {MAX_PASSAGES}", passages.len()),
            ));
        }
        Ok(Knowledge::build(passages, products))
    }

    fn build(passages: Vec<Passage>, products: Vec<Product>) -> Knowledge {
        let tokenizer = bm25::DefaultTokenizer::new(Language::English);
        let docs: Vec<bm25::Document<usize>> = passages
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // A product answers what people ask of products, in the words they ask it.
                let asked = match p.origin {
                    Origin::Product(_) => PRODUCT_WORDS,
                    Origin::Document(_) => "",
                };
                bm25::Document::new(i, format!("{}\n{}\n{asked}", p.title, p.text))
            })
            .collect();
        let terms: Vec<HashSet<String>> = docs
            .iter()
            .map(|d| tokenizer.tokenize(&d.contents).into_iter().collect())
            .collect();
        let mut df: HashMap<String, usize> = HashMap::new();
        for set in &terms {
            for t in set {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let engine = if docs.is_empty() {
            SearchEngineBuilder::<usize>::with_avgdl(1.0).build()
        } else {
            SearchEngineBuilder::<usize>::with_documents(Language::English, docs).build()
        };
        Knowledge {
            passages,
            products,
            engine,
            tokenizer,
            terms,
            df,
        }
    }

    /// Every passage.
    pub fn passages(&self) -> &[Passage] {
        &self.passages
    }

    /// The catalog.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The passages that match a question, best first, at most `limit`.
    pub fn search(&self, question: &str, limit: usize) -> Vec<Hit<'_>> {
        let words: HashSet<String> = self.tokenizer.tokenize(question).into_iter().collect();
        self.engine
            .search(question, limit)
            .into_iter()
            .filter_map(|r| {
                let passage = self.passages.get(r.document.id)?;
                Some(Hit {
                    passage,
                    score: r.score,
                    coverage: self.coverage(&words, r.document.id),
                })
            })
            .collect()
    }

    /// The passage that answers a question, when one covers enough of it.
    pub fn answer(&self, question: &str) -> Option<Hit<'_>> {
        self.search(question, 5)
            .into_iter()
            .filter(|h| h.coverage >= MIN_COVERAGE)
            .max_by(|a, b| {
                (a.coverage, a.score)
                    .partial_cmp(&(b.coverage, b.score))
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
    }

    /// Products whose name, id or description match, best first (the inventory tool).
    pub fn find_products(&self, query: &str, limit: usize) -> Vec<&Product> {
        let exact = self
            .products
            .iter()
            .filter(|p| p.sku.eq_ignore_ascii_case(query.trim()));
        let ranked = self
            .search(query, 20)
            .into_iter()
            .filter_map(|h| match h.passage.origin {
                Origin::Product(i) => self.products.get(i),
                Origin::Document(_) => None,
            });
        let mut seen = HashSet::new();
        exact
            .chain(ranked)
            .filter(|p| seen.insert(p.sku.clone()))
            .take(limit)
            .collect()
    }

    /// The share of the question's information the passage holds: the inverse document
    /// frequencies of its words found in the passage over those of all its words. A word no
    /// passage holds weighs as the rarest word could.
    fn coverage(&self, words: &HashSet<String>, passage: usize) -> f32 {
        let n = self.passages.len().max(1) as f32;
        let idf = |df: usize| ((n - df as f32 + 0.5) / (df as f32 + 0.5) + 1.0).ln();
        let (mut held, mut all) = (0.0, 0.0);
        for w in words {
            let weight = idf(self.df.get(w).copied().unwrap_or(0));
            all += weight;
            if self.terms[passage].contains(w) {
                held += weight;
            }
        }
        if all == 0.0 { 0.0 } else { held / all }
    }
}

/// Splits Markdown at its headings into passages of plain text.
fn markdown_passages(file: &str, text: &str) -> Vec<Passage> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut out = Vec::new();
    let mut title = String::new();
    let mut body = String::new();
    let mut in_heading = false;
    let mut link: Option<String> = None;
    let flush = |title: &mut String, body: &mut String, out: &mut Vec<Passage>| {
        let text = tidy(body);
        if !title.trim().is_empty() && !text.is_empty() {
            out.push(Passage {
                title: title.trim().to_owned(),
                text,
                origin: Origin::Document(file.to_owned()),
            });
        }
        title.clear();
        body.clear();
    };
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => {
                flush(&mut title, &mut body, &mut out);
                in_heading = true;
            }
            Event::End(TagEnd::Heading(_)) => in_heading = false,
            Event::Start(Tag::Link { dest_url, .. }) => link = Some(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                if let Some(url) = link.take() {
                    let target = if in_heading { &mut title } else { &mut body };
                    if !target.ends_with(&url) {
                        target.push_str(&format!(" ({url})"));
                    }
                }
            }
            Event::Start(Tag::Item) => body.push_str("\n• "),
            Event::End(TagEnd::Paragraph) => body.push_str("\n\n"),
            Event::End(TagEnd::List(_)) => body.push_str("\n\n"),
            Event::Text(t) | Event::Code(t) => {
                if in_heading {
                    title.push_str(&t);
                } else {
                    body.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if in_heading {
                    title.push(' ');
                } else {
                    body.push(' ');
                }
            }
            _ => {}
        }
    }
    flush(&mut title, &mut body, &mut out);
    out
}

/// Blank lines at most one at a time, no trailing space.
fn tidy(text: &str) -> String {
    let mut out = String::new();
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line.trim_start_matches(' '));
    }
    out
}

fn check_product(file: &str, row: usize, p: &Product) -> Result<(), KnowledgeError> {
    if p.sku.trim().is_empty() || p.name.trim().is_empty() {
        return Err(bad(file, format!("product {row} needs a sku and a name")));
    }
    if !p.price.is_finite() || p.price < 0.0 {
        return Err(bad(
            file,
            format!("product {row} ({}) has a bad price", p.sku),
        ));
    }
    Ok(())
}

fn json_catalog(file: &str, text: &str) -> Result<Vec<Product>, KnowledgeError> {
    let products: Vec<Product> = serde_json::from_str(text)
        .map_err(|e| bad(file, format!("is not a JSON list of products: {e}")))?;
    for (i, p) in products.iter().enumerate() {
        check_product(file, i + 1, p)?;
    }
    Ok(products)
}

fn csv_catalog(file: &str, text: &str) -> Result<Vec<Product>, KnowledgeError> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut products = Vec::new();
    for (i, row) in reader.deserialize::<Product>().enumerate() {
        let p = row.map_err(|e| bad(file, format!("row {}: {e}", i + 2)))?;
        check_product(file, i + 2, &p)?;
        products.push(p);
    }
    Ok(products)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> Knowledge {
        let faq = "# Northwind FAQ\n\n## Do you ship internationally?\n\nYes. We ship to Canada, \
                   the UK and the EU. Delivery takes 5–8 business days; see [shipping](/shipping).\n\n\
                   ## How long does delivery take?\n\nOrders ship within 1 business day. Standard \
                   delivery in the US takes 2–4 days.\n\n## What is your return policy?\n\nYou can \
                   return any item within 30 days for a full refund.\n";
        let catalog = r#"[{"sku":"LAMP-1","name":"Arc Floor Lamp","price":129,"currency":"USD","stock":12,"description":"A brass arc lamp.","url":"/p/lamp"}]"#;
        Knowledge::from_files(&[
            ("faq.md".to_owned(), faq.to_owned()),
            ("catalog.json".to_owned(), catalog.to_owned()),
        ])
        .unwrap()
    }

    #[test]
    fn a_covered_question_gets_its_passage() {
        let k = shop();
        let hit = k.answer("Do you ship to Canada?").expect("an answer");
        assert_eq!(hit.passage.title, "Do you ship internationally?");
        assert!(hit.passage.text.contains("Canada"));
        assert!(
            hit.passage.text.contains("(/shipping)"),
            "{}",
            hit.passage.text
        );
    }

    #[test]
    fn a_question_the_knowledge_does_not_cover_gets_nothing() {
        let k = shop();
        for q in [
            "What is the warranty on the lamp?",
            "Do you have a store in Paris?",
            "",
            "   ",
            "<script>alert(1)</script>",
        ] {
            assert!(k.answer(q).is_none(), "{q:?} got {:?}", k.answer(q));
        }
    }

    #[test]
    fn products_are_found_by_name_or_sku() {
        let k = shop();
        assert_eq!(k.find_products("floor lamp", 3)[0].sku, "LAMP-1");
        assert_eq!(k.find_products("lamp-1", 3)[0].name, "Arc Floor Lamp");
        assert!(k.find_products("sofa", 3).is_empty());
        assert!(
            k.answer("how much is the arc lamp")
                .unwrap()
                .passage
                .text
                .contains("12 in stock")
        );
    }

    #[test]
    fn a_csv_catalog_reads_like_json_and_a_bad_row_is_named() {
        let good = "sku,name,price,currency,stock\nMUG-2,Stoneware Mug,18.5,USD,0\n";
        let k = Knowledge::from_files(&[("catalog.csv".to_owned(), good.to_owned())]).unwrap();
        assert_eq!(k.products()[0].stock, Some(0));
        assert!(k.products()[0].summary().contains("out of stock"));
        let bad_price = "sku,name,price\nX,Thing,abc\n";
        let e = Knowledge::from_files(&[("catalog.csv".to_owned(), bad_price.to_owned())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("catalog.csv") && e.contains("row 2"), "{e}");
        let no_name = r#"[{"sku":"A","name":""}]"#;
        let e = Knowledge::from_files(&[("c.json".to_owned(), no_name.to_owned())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs a sku and a name"), "{e}");
        let other = Knowledge::from_files(&[("notes.txt".to_owned(), "x".to_owned())]);
        assert!(other.is_err());
    }

    #[test]
    fn empty_knowledge_answers_nothing() {
        let k = Knowledge::default();
        assert!(k.answer("Do you ship to Canada?").is_none());
        assert!(k.find_products("lamp", 3).is_empty());
    }
}
