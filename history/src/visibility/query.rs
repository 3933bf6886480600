//! The visibility query language: the SQL `WHERE` subset Temporal's List/Count APIs accept,
//! with the real server's error messages (checked against `temporal server start-dev`).
//!
//! Parsing happens in two steps like the real server's: first the syntax (so a truncated query
//! is "malformed SQL query" whatever its names), then every column is resolved to a search
//! attribute and every literal checked and converted to that attribute's type. Evaluation uses
//! SQL's three-valued logic: a comparison with a missing attribute is unknown, not false, so
//! `NOT (X = 'a')` does not match runs without `X`.

use std::cmp::Ordering;

use temporalio_protos::temporal::api::common::v1::Payload;

use super::{SearchAttributeType, VisibilityRecord, system_attribute};
use crate::{mutable_state::WorkflowStatus, time::Nanos};

/// A query refused with INVALID_ARGUMENT; the message is the full one the server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query: {0}")]
pub struct QueryError(String);

fn malformed(at: usize) -> QueryError {
    // Positions count from the start of the statement the real server wraps the query in.
    const WRAPPER: usize = "select * from table1 where ".len();
    QueryError(format!(
        "malformed SQL query: syntax error at position {}",
        WRAPPER + at + 1
    ))
}

fn invalid(msg: impl std::fmt::Display) -> QueryError {
    QueryError(format!("invalid expression: {msg}"))
}

fn unsupported(msg: impl std::fmt::Display) -> QueryError {
    QueryError(format!("operation is not supported: {msg}"))
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    Sym(&'static str),
}

struct Token {
    tok: Tok,
    /// Byte offset just past the token.
    end: usize,
}

const SYMBOLS: &[&str] = &["!=", "<>", "<=", ">=", "=", "<", ">", "(", ")", ","];

fn lex(text: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = if c == b'\'' || c == b'"' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(ch) = text[i..].chars().next() else {
                    return Err(malformed(text.len()));
                };
                i += ch.len_utf8();
                if ch as u32 == c as u32 {
                    // A doubled quote is a literal quote.
                    if bytes.get(i) == Some(&c) {
                        s.push(ch);
                        i += 1;
                        continue;
                    }
                    break;
                }
                if ch == '\\' {
                    let Some(next) = text[i..].chars().next() else {
                        return Err(malformed(text.len()));
                    };
                    i += next.len_utf8();
                    s.push(next);
                    continue;
                }
                s.push(ch);
            }
            Tok::Str(s)
        } else if c == b'`' {
            let close = text[i + 1..].find('`').ok_or(malformed(text.len()))?;
            let name = text[i + 1..i + 1 + close].to_string();
            i += close + 2;
            Tok::Ident(name)
        } else if c.is_ascii_digit()
            || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            let lit = &text[start..i];
            if let Ok(v) = lit.parse::<i64>() {
                Tok::Int(v)
            } else {
                Tok::Float(lit.parse().map_err(|_| malformed(i))?)
            }
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            Tok::Ident(text[start..i].to_string())
        } else if let Some(sym) = SYMBOLS.iter().find(|s| text[i..].starts_with(**s)) {
            i += sym.len();
            Tok::Sym(sym)
        } else {
            return Err(malformed(i));
        };
        out.push(Token { tok, end: i });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Syntax

/// A literal as written.
#[derive(Debug, Clone, PartialEq)]
enum RawValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An unquoted name on the right-hand side: valid SQL, refused when converting.
    Column(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn text(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Predicate<C, V> {
    Compare(C, CmpOp, V),
    In(C, Vec<V>, bool),
    Between(C, V, V, bool),
    StartsWith(C, V, bool),
    IsNull(C, bool),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr<C, V> {
    And(Box<Expr<C, V>>, Box<Expr<C, V>>),
    Or(Box<Expr<C, V>>, Box<Expr<C, V>>),
    Not(Box<Expr<C, V>>),
    Leaf(Predicate<C, V>),
}

type RawExpr = Expr<String, RawValue>;

struct Statement {
    filter: Option<RawExpr>,
    group_by: Vec<String>,
    order_by: bool,
    limit: bool,
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    len: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn error(&self) -> QueryError {
        malformed(self.tokens.get(self.pos).map_or(self.len, |t| t.end))
    }

    fn next(&mut self) -> Result<&Tok, QueryError> {
        let t = self.tokens.get(self.pos).ok_or_else(|| self.error())?;
        self.pos += 1;
        Ok(&t.tok)
    }

    fn at_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.at_keyword(kw);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), QueryError> {
        if self.eat_keyword(kw) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn eat_sym(&mut self, sym: &str) -> bool {
        let found = matches!(self.peek(), Some(Tok::Sym(s)) if *s == sym);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), QueryError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn statement(&mut self) -> Result<Statement, QueryError> {
        let mut st = Statement {
            filter: None,
            group_by: Vec::new(),
            order_by: false,
            limit: false,
        };
        if !self.tokens.is_empty() && !self.at_keyword("group") && !self.at_keyword("order") {
            st.filter = Some(self.or_expr()?);
        }
        if self.eat_keyword("group") {
            self.expect_keyword("by")?;
            loop {
                st.group_by.push(self.column()?);
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.eat_keyword("order") {
            self.expect_keyword("by")?;
            st.order_by = true;
            loop {
                self.column()?;
                let _ = self.eat_keyword("asc") || self.eat_keyword("desc");
                if !self.eat_sym(",") {
                    break;
                }
            }
        }
        if self.eat_keyword("limit") {
            st.limit = true;
            match self.next()? {
                Tok::Int(_) => {}
                _ => return Err(malformed(self.tokens[self.pos - 1].end)),
            }
        }
        if self.pos < self.tokens.len() {
            return Err(self.error());
        }
        Ok(st)
    }

    fn or_expr(&mut self) -> Result<RawExpr, QueryError> {
        let mut left = self.and_expr()?;
        while self.eat_keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and_expr()?));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<RawExpr, QueryError> {
        let mut left = self.not_expr()?;
        while self.eat_keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.not_expr()?));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<RawExpr, QueryError> {
        if self.eat_keyword("not") {
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        if self.eat_sym("(") {
            let inner = self.or_expr()?;
            self.expect_sym(")")?;
            return Ok(inner);
        }
        self.predicate().map(Expr::Leaf)
    }

    fn column(&mut self) -> Result<String, QueryError> {
        match self.peek() {
            Some(Tok::Ident(name)) if !is_reserved(name) => {
                let name = name.clone();
                self.pos += 1;
                Ok(name)
            }
            _ => Err(self.error()),
        }
    }

    fn value(&mut self) -> Result<RawValue, QueryError> {
        let at = self.pos;
        Ok(match self.next()?.clone() {
            Tok::Str(s) => RawValue::Str(s),
            Tok::Int(v) => RawValue::Int(v),
            Tok::Float(v) => RawValue::Float(v),
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => RawValue::Bool(true),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => RawValue::Bool(false),
            Tok::Ident(s) if !is_reserved(&s) => RawValue::Column(s),
            _ => {
                self.pos = at;
                return Err(self.error());
            }
        })
    }

    fn predicate(&mut self) -> Result<Predicate<String, RawValue>, QueryError> {
        let col = self.column()?;
        if self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            self.expect_keyword("null")?;
            return Ok(Predicate::IsNull(col, negated));
        }
        let negated = self.eat_keyword("not");
        if self.eat_keyword("in") {
            self.expect_sym("(")?;
            let mut values = vec![self.value()?];
            while self.eat_sym(",") {
                values.push(self.value()?);
            }
            self.expect_sym(")")?;
            return Ok(Predicate::In(col, values, negated));
        }
        if self.eat_keyword("between") {
            let lo = self.value()?;
            self.expect_keyword("and")?;
            let hi = self.value()?;
            return Ok(Predicate::Between(col, lo, hi, negated));
        }
        if self.eat_keyword("starts_with") {
            return Ok(Predicate::StartsWith(col, self.value()?, negated));
        }
        if negated {
            return Err(self.error());
        }
        let op = match self.next()? {
            Tok::Sym("=") => CmpOp::Eq,
            Tok::Sym("!=") | Tok::Sym("<>") => CmpOp::Ne,
            Tok::Sym("<") => CmpOp::Lt,
            Tok::Sym("<=") => CmpOp::Le,
            Tok::Sym(">") => CmpOp::Gt,
            Tok::Sym(">=") => CmpOp::Ge,
            _ => {
                self.pos -= 1;
                return Err(self.error());
            }
        };
        Ok(Predicate::Compare(col, op, self.value()?))
    }
}

fn is_reserved(word: &str) -> bool {
    const RESERVED: &[&str] = &[
        "and",
        "or",
        "not",
        "in",
        "between",
        "is",
        "null",
        "starts_with",
        "group",
        "order",
        "by",
        "limit",
        "asc",
        "desc",
        "true",
        "false",
    ];
    RESERVED.iter().any(|r| word.eq_ignore_ascii_case(r))
}

// ---------------------------------------------------------------------------------------------
// Conversion: names to search attributes, literals to their types

/// A resolved column.
#[derive(Debug, Clone, PartialEq)]
struct Column {
    name: String,
    kind: SearchAttributeType,
}

/// A literal converted to its column's type.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Time(Nanos),
}

type Filter = Expr<Column, Value>;

/// A parsed, validated query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    filter: Option<Filter>,
    group_by: Option<Column>,
}

impl Query {
    /// Parses `text` for a namespace whose custom search attributes `custom` resolves.
    /// `GROUP BY` is only meaningful for counting; `allow_group_by` says whether it may appear.
    pub fn parse(
        text: &str,
        custom: impl Fn(&str) -> Option<SearchAttributeType>,
        allow_group_by: bool,
    ) -> Result<Query, QueryError> {
        let text = text.trim();
        let tokens = lex(text)?;
        let st = Parser {
            tokens: &tokens,
            pos: 0,
            len: text.len(),
        }
        .statement()?;
        if st.limit {
            return Err(unsupported("'LIMIT' clause"));
        }
        let resolve = |name: &str| -> Result<Column, QueryError> {
            system_attribute(name)
                .or_else(|| custom(name))
                .map(|kind| Column {
                    name: name.to_string(),
                    kind,
                })
                .ok_or_else(|| QueryError(format!("invalid search attribute: {name}")))
        };
        let filter = st.filter.map(|e| convert(e, &resolve)).transpose()?;
        if st.order_by {
            return Err(unsupported("'ORDER BY' clause"));
        }
        let group_by = match st.group_by.as_slice() {
            [] => None,
            [name] => {
                let col = resolve(name)?;
                let allowed = ["ExecutionStatus", "TemporalNamespaceDivision"]
                    .contains(&name.as_str())
                    || name.starts_with("TemporalLowCardinalityKeyword");
                if !allowed || !allow_group_by {
                    return Err(unsupported(format!(
                        "'GROUP BY' clause is not supported for search attribute {name}"
                    )));
                }
                Some(col)
            }
            _ => {
                return Err(unsupported(
                    "'GROUP BY' clause supports only a single field",
                ));
            }
        };
        Ok(Query { filter, group_by })
    }

    pub fn matches(&self, record: &VisibilityRecord) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| eval(f, record) == Some(true))
    }

    /// True for `... GROUP BY <field>` (CountWorkflowExecutions groups its answer).
    pub fn is_grouped(&self) -> bool {
        self.group_by.is_some()
    }

    /// The record's value of the `GROUP BY` field, None when the record lacks it.
    pub fn group_of(&self, record: &VisibilityRecord) -> Option<String> {
        let col = self.group_by.as_ref()?;
        match field(record, col)? {
            Field::Str(s) => Some(s),
            Field::List(l) => Some(l.join(",")),
            Field::Num(n) => Some(n.to_string()),
            Field::Bool(b) => Some(b.to_string()),
            Field::Time(t) => Some(t.to_string()),
        }
    }
}

fn convert(
    e: RawExpr,
    resolve: &impl Fn(&str) -> Result<Column, QueryError>,
) -> Result<Filter, QueryError> {
    Ok(match e {
        Expr::And(a, b) => Expr::And(
            Box::new(convert(*a, resolve)?),
            Box::new(convert(*b, resolve)?),
        ),
        Expr::Or(a, b) => Expr::Or(
            Box::new(convert(*a, resolve)?),
            Box::new(convert(*b, resolve)?),
        ),
        Expr::Not(a) => Expr::Not(Box::new(convert(*a, resolve)?)),
        Expr::Leaf(p) => Expr::Leaf(convert_predicate(p, resolve)?),
    })
}

fn convert_predicate(
    p: Predicate<String, RawValue>,
    resolve: &impl Fn(&str) -> Result<Column, QueryError>,
) -> Result<Predicate<Column, Value>, QueryError> {
    use SearchAttributeType::*;
    let check_operator = |col: &Column, op: &str| {
        let ok = match col.kind {
            Keyword => true,
            KeywordList => ["=", "!=", "IN", "NOT IN"].contains(&op),
            Text => ["=", "!="].contains(&op),
            _ => !op.contains("STARTS_WITH"),
        };
        if ok {
            Ok(())
        } else {
            Err(unsupported(format!(
                "operator '{op}' not supported for {} type search attribute '{}'",
                col.kind.name(),
                col.name
            )))
        }
    };
    Ok(match p {
        Predicate::Compare(c, op, v) => {
            let col = resolve(&c)?;
            check_operator(&col, op.text())?;
            let v = convert_value(&col, v)?;
            Predicate::Compare(col, op, v)
        }
        Predicate::In(c, vs, negated) => {
            let col = resolve(&c)?;
            check_operator(&col, if negated { "NOT IN" } else { "IN" })?;
            let vs = vs
                .into_iter()
                .map(|v| convert_value(&col, v))
                .collect::<Result<_, _>>()?;
            Predicate::In(col, vs, negated)
        }
        Predicate::Between(c, lo, hi, negated) => {
            let col = resolve(&c)?;
            if !matches!(col.kind, Datetime | Double | Int | Keyword) {
                return Err(invalid(format!(
                    "cannot do range condition on search attribute '{}' of type {}",
                    col.name,
                    col.kind.name()
                )));
            }
            let lo = convert_value(&col, lo)?;
            let hi = convert_value(&col, hi)?;
            Predicate::Between(col, lo, hi, negated)
        }
        Predicate::StartsWith(c, v, negated) => {
            let col = resolve(&c)?;
            check_operator(
                &col,
                if negated {
                    "NOT STARTS_WITH"
                } else {
                    "STARTS_WITH"
                },
            )?;
            let v = convert_value(&col, v)?;
            Predicate::StartsWith(col, v, negated)
        }
        Predicate::IsNull(c, negated) => Predicate::IsNull(resolve(&c)?, negated),
    })
}

/// Go's `%#v` of the literal and its Go type, as the real server's messages print them.
fn go_repr(v: &RawValue) -> (String, &'static str) {
    match v {
        RawValue::Str(s) => (format!("{s:?}"), "string"),
        RawValue::Int(i) => (i.to_string(), "int64"),
        RawValue::Float(f) => (f.to_string(), "float64"),
        RawValue::Bool(b) => (b.to_string(), "bool"),
        RawValue::Column(c) => (c.clone(), "string"),
    }
}

fn convert_value(col: &Column, v: RawValue) -> Result<Value, QueryError> {
    use SearchAttributeType::*;
    if let RawValue::Column(name) = &v {
        return Err(unsupported(format!(
            "column name on the right side of comparison expression (did you forget to quote {name:?}?)"
        )));
    }
    let type_error = |v: &RawValue| {
        let (repr, go_type) = go_repr(v);
        invalid(format!(
            "invalid value type for search attribute {} of type {}: {repr} (type: {go_type})",
            col.name,
            col.kind.name()
        ))
    };
    match col.name.as_str() {
        "ExecutionStatus" => return execution_status(&v).map(Value::Str),
        "ExecutionDuration" => {
            return match &v {
                RawValue::Int(n) => Ok(Value::Num(*n as f64)),
                RawValue::Str(s) => parse_go_duration(s)
                    .map(|n| Value::Num(n as f64))
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid duration value for search attribute ExecutionDuration: {s}"
                        ))
                    }),
                _ => Err(invalid(format!(
                    "unexpected value type {} for search attribute ExecutionDuration",
                    go_repr(&v).1
                ))),
            };
        }
        _ => {}
    }
    match (col.kind, &v) {
        (Int | Double, RawValue::Int(n)) => Ok(Value::Num(*n as f64)),
        (Int | Double, RawValue::Float(n)) => Ok(Value::Num(*n)),
        (Bool, RawValue::Bool(b)) => Ok(Value::Bool(*b)),
        (Datetime, RawValue::Int(n)) => Ok(Value::Time(*n)),
        (Datetime, RawValue::Str(s)) => parse_rfc3339(s)
            .map(Value::Time)
            .ok_or_else(|| invalid(format!("unable to parse datetime '{s}'"))),
        (Keyword | KeywordList | Text, RawValue::Str(s)) => Ok(Value::Str(s.clone())),
        _ => Err(type_error(&v)),
    }
}

const STATUS_NAMES: &[(WorkflowStatus, &str, i64)] = &[
    (WorkflowStatus::Running, "Running", 1),
    (WorkflowStatus::Completed, "Completed", 2),
    (WorkflowStatus::Failed, "Failed", 3),
    (WorkflowStatus::Canceled, "Canceled", 4),
    (WorkflowStatus::Terminated, "Terminated", 5),
    (WorkflowStatus::ContinuedAsNew, "ContinuedAsNew", 6),
    (WorkflowStatus::TimedOut, "TimedOut", 7),
];

/// The name visibility shows for a status (`'Running'`, `'Completed'`, ...).
pub fn status_name(status: WorkflowStatus) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|(s, _, _)| *s == status)
        .map_or("Unspecified", |(_, n, _)| n)
}

/// Accepts a status by name (`Completed` or `WORKFLOW_EXECUTION_STATUS_COMPLETED`) or number.
fn execution_status(v: &RawValue) -> Result<String, QueryError> {
    let found = match v {
        RawValue::Int(n) => STATUS_NAMES.iter().find(|(_, _, id)| id == n),
        RawValue::Str(s) => STATUS_NAMES.iter().find(|(_, name, _)| {
            s == name || {
                let screaming: String = s
                    .strip_prefix("WORKFLOW_EXECUTION_STATUS_")
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| *c != '_')
                    .collect();
                !screaming.is_empty() && screaming.eq_ignore_ascii_case(name)
            }
        }),
        _ => {
            return Err(invalid(format!(
                "unexpected value type {} for search attribute ExecutionStatus",
                go_repr(v).1
            )));
        }
    };
    match (found, v) {
        (Some((_, name, _)), _) => Ok(name.to_string()),
        (None, RawValue::Str(s)) => Err(invalid(format!("invalid ExecutionStatus value '{s}'"))),
        (None, other) => Err(invalid(format!(
            "invalid ExecutionStatus value {}",
            go_repr(other).0
        ))),
    }
}

/// Go's `time.ParseDuration` syntax ("1h30m", "1.5s", "300ms"), in nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total = 0.0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * unit;
    }
    Some((sign * total) as i64)
}

/// RFC 3339 (`2026-01-02T03:04:05.123456Z`, `...+01:00`) in Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &s[i + 1..i + 1 + digits.min(9)];
        nanos = frac.parse::<i64>().ok()? * 10i64.pow(9 - frac.len() as u32);
        i += 1 + digits;
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let secs = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let days = crate::time::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// A record's value of a column.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    Str(String),
    Num(f64),
    Bool(bool),
    Time(Nanos),
    List(Vec<String>),
}

fn field(r: &VisibilityRecord, col: &Column) -> Option<Field> {
    let closed = r.is_closed();
    Some(match col.name.as_str() {
        "WorkflowId" => Field::Str(r.workflow_id.clone()),
        "RunId" => Field::Str(r.run_id.clone()),
        "WorkflowType" => Field::Str(r.workflow_type.clone()),
        "TaskQueue" => Field::Str(r.task_queue.clone()),
        "ExecutionStatus" => Field::Str(status_name(r.status).to_string()),
        "StartTime" => Field::Time(r.start_time),
        "ExecutionTime" => Field::Time(r.execution_time),
        "CloseTime" if closed => Field::Time(r.close_time),
        "HistoryLength" if closed => Field::Num(r.history_length as f64),
        "HistorySizeBytes" if closed => Field::Num(r.history_size_bytes as f64),
        "ExecutionDuration" if closed => {
            Field::Num(r.close_time.saturating_sub(r.execution_time) as f64)
        }
        "CloseTime" | "HistoryLength" | "HistorySizeBytes" | "ExecutionDuration" => return None,
        name => return decode_payload(r.search_attribute(name)?, col.kind),
    })
}

/// Whether a search attribute payload holds a value of `kind` (lists of it included).
pub fn value_fits(p: &Payload, kind: SearchAttributeType) -> bool {
    decode_payload(p, kind).is_some()
}

/// Search attribute payloads are JSON (`json/plain`), as every SDK writes them.
fn decode_payload(p: &Payload, kind: SearchAttributeType) -> Option<Field> {
    use SearchAttributeType::*;
    let json: serde_json::Value = serde_json::from_slice(&p.data).ok()?;
    Some(match (kind, json) {
        (Keyword | KeywordList, serde_json::Value::Array(items)) => Field::List(
            items
                .into_iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
        ),
        (KeywordList, serde_json::Value::String(s)) => Field::List(vec![s]),
        (Keyword | Text, serde_json::Value::String(s)) => Field::Str(s),
        (Int | Double, serde_json::Value::Number(n)) => Field::Num(n.as_f64()?),
        (Bool, serde_json::Value::Bool(b)) => Field::Bool(b),
        (Datetime, serde_json::Value::String(s)) => Field::Time(parse_rfc3339(&s)?),
        _ => return None,
    })
}

fn compare(f: &Field, v: &Value) -> Option<Ordering> {
    match (f, v) {
        (Field::Str(a), Value::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Field::Num(a), Value::Num(b)) => a.partial_cmp(b),
        (Field::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Field::Time(a), Value::Time(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

/// Text attributes match on words, like the full-text fields they stand for.
fn text_matches(text: &str, query: &str) -> bool {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    query
        .split_whitespace()
        .all(|q| words.contains(&q.to_lowercase()))
}

fn equals(col: &Column, f: &Field, v: &Value) -> Option<bool> {
    match (f, v) {
        (Field::List(items), Value::Str(s)) => Some(items.contains(s)),
        (Field::Str(text), Value::Str(q)) if col.kind == SearchAttributeType::Text => {
            Some(text_matches(text, q))
        }
        _ => compare(f, v).map(|o| o == Ordering::Equal),
    }
}

fn eval(e: &Filter, r: &VisibilityRecord) -> Option<bool> {
    match e {
        Expr::And(a, b) => match (eval(a, r), eval(b, r)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Expr::Or(a, b) => match (eval(a, r), eval(b, r)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Expr::Not(a) => eval(a, r).map(|b| !b),
        Expr::Leaf(p) => eval_predicate(p, r),
    }
}

fn eval_predicate(p: &Predicate<Column, Value>, r: &VisibilityRecord) -> Option<bool> {
    match p {
        Predicate::IsNull(col, negated) => Some(field(r, col).is_none() != *negated),
        Predicate::Compare(col, op, v) => {
            let f = field(r, col)?;
            match op {
                CmpOp::Eq => equals(col, &f, v),
                CmpOp::Ne => equals(col, &f, v).map(|b| !b),
                _ => {
                    let o = compare(&f, v)?;
                    Some(match op {
                        CmpOp::Lt => o.is_lt(),
                        CmpOp::Le => o.is_le(),
                        CmpOp::Gt => o.is_gt(),
                        _ => o.is_ge(),
                    })
                }
            }
        }
        Predicate::In(col, vs, negated) => {
            let f = field(r, col)?;
            let mut any = false;
            for v in vs {
                any |= equals(col, &f, v)?;
            }
            Some(any != *negated)
        }
        Predicate::Between(col, lo, hi, negated) => {
            let f = field(r, col)?;
            let inside = compare(&f, lo)?.is_ge() && compare(&f, hi)?.is_le();
            Some(inside != *negated)
        }
        Predicate::StartsWith(col, Value::Str(prefix), negated) => match field(r, col)? {
            Field::Str(s) => Some(s.starts_with(prefix.as_str()) != *negated),
            _ => None,
        },
        Predicate::StartsWith(..) => None,
    }
}
