//! The visibility query language: the SQL `WHERE` subset Temporal's List/Count APIs accept,
//! with the real server's error messages (checked against `temporal server start-dev`).
//!
//! Parsing happens in two steps like the real server's: first the syntax (so a truncated query
//! is "malformed SQL query" whatever its names), then every column is resolved to a search
//! attribute and every literal checked and converted to that attribute's type. Evaluation uses
//! SQL's three-valued logic: a comparison with a missing attribute is unknown, not false, so
//! `NOT (X = 'a')` does not match runs without `X`.
//!
//! The syntax is that of the server's parser (`temporalio/sqlparser`, a MySQL grammar): quotes
//! doubled or escaped with backslashes, keywords in any case, `&&`/`||` for AND/OR, comments,
//! and its limits on nesting and tree depth. The conversion follows the server's query
//! converter (`common/persistence/visibility/store/query/converter.go`): its value parsing, its
//! operator lists and the order in which it checks things, so that the same query fails with
//! the same message.

use std::cmp::Ordering;

use temporalio_protos::temporal::api::{common::v1::Payload, enums::v1::WorkflowExecutionStatus};

use super::{SearchAttributeType, VisibilityRecord, system_attribute};
use crate::{mutable_state::WorkflowStatus, time::Nanos};

/// A query refused with INVALID_ARGUMENT; the message is the full one the server sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid query: {0}")]
pub struct QueryError(String);

fn invalid(msg: impl std::fmt::Display) -> QueryError {
    QueryError(format!("invalid expression: {msg}"))
}

fn unsupported(msg: impl std::fmt::Display) -> QueryError {
    QueryError(format!("operation is not supported: {msg}"))
}

/// Where the server's parser gives up: just past the token it could not use, which it quotes
/// (`near '...'`) when that token has text of its own.
#[derive(Debug)]
struct SyntaxError {
    reason: &'static str,
    /// Byte offset in the query just past the offending token.
    end: usize,
    near: Option<String>,
}

const SYNTAX_ERROR: &str = "syntax error";

impl SyntaxError {
    fn at(end: usize, near: Option<String>) -> Self {
        SyntaxError {
            reason: SYNTAX_ERROR,
            end,
            near: near.filter(|n| !n.is_empty()),
        }
    }

    /// `prefix`: how many bytes the server puts in front of the query to make it a statement;
    /// its positions count from the start of that statement, and from 1.
    fn into_query_error(self, prefix: usize) -> QueryError {
        let near = self
            .near
            .map(|n| format!(" near '{n}'"))
            .unwrap_or_default();
        QueryError(format!(
            "malformed SQL query: {} at position {}{near}",
            self.reason,
            prefix + self.end + 1
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: a name, or a keyword when it is one.
    Word(String),
    /// A name in backticks, never a keyword.
    Quoted(String),
    Str(String),
    /// Digits as written: a sign in front changes them as text (see `Parser::value`).
    Integral(String),
    /// A decimal, an exponent or a `0x` number, as written.
    Float(String),
    Sym(&'static str),
}

struct Token {
    tok: Tok,
    /// Byte offset just past the token.
    end: usize,
    /// What a syntax error at this token quotes: the text the server's tokenizer kept for it
    /// (none for operators and punctuation).
    near: Option<String>,
}

/// Longest first, so `<=` is not read as `<`. Everything the server's tokenizer knows, even
/// what no condition can use, so that it fails as a syntax error and not as a stray character.
const SYMBOLS: &[&str] = &[
    "<=>", "!=", "<>", "<=", ">=", "&&", "||", "=", "<", ">", "(", ")", ",", "+", "-", ";", "*",
    "/", "%", "^", "~", "&", "|", "!", ".",
];

/// Words that cannot be a column name without backticks (the server's grammar reserves many
/// more; these are the ones this grammar gives a meaning to).
const RESERVED: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "between",
    "is",
    "null",
    "starts_with",
    "like",
    "regexp",
    "rlike",
    "group",
    "order",
    "by",
    "limit",
    "asc",
    "desc",
    "true",
    "false",
];

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| word.eq_ignore_ascii_case(r))
}

fn is_letter(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b'@'
}

fn lex(text: &str) -> Result<Vec<Token>, SyntaxError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            i += 1;
            continue;
        }
        let rest = &text[i..];
        if rest.starts_with("--") || c == b'#' {
            i = rest.find('\n').map_or(bytes.len(), |n| i + n + 1);
            continue;
        }
        if rest.starts_with("/*") {
            match rest[2..].find("*/") {
                Some(n) => {
                    i += n + 4;
                    continue;
                }
                None => return Err(SyntaxError::at(bytes.len(), Some(rest.to_string()))),
            }
        }
        let (tok, near) = if c == b'\'' || c == b'"' {
            let s = lex_string(text, &mut i)?;
            (Tok::Str(s.clone()), Some(s))
        } else if c == b'`' {
            let name = lex_quoted_name(text, &mut i)?;
            // The server prints the column back and drops every backtick from that.
            (Tok::Quoted(name.replace('`', "")), Some(name))
        } else if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (tok, literal) = lex_number(text, &mut i)?;
            (tok, Some(literal))
        } else if is_letter(c) {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|&c| is_letter(c) || c.is_ascii_digit() || c == b'.')
            {
                i += 1;
            }
            let word = &text[start..i];
            // The server's tokenizer keeps keywords lower-cased.
            let near = if is_reserved(word) {
                word.to_ascii_lowercase()
            } else {
                word.to_string()
            };
            (Tok::Word(word.to_string()), Some(near))
        } else if let Some(sym) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
            i += sym.len();
            (Tok::Sym(sym), None)
        } else {
            let ch = rest.chars().next().unwrap_or_default();
            return Err(SyntaxError::at(i + 1, Some(ch.to_string())));
        };
        out.push(Token {
            tok,
            end: i,
            near: near.filter(|n| !n.is_empty()),
        });
    }
    Ok(out)
}

/// A quoted string from `text[*i]` (its quote) on: a doubled quote is one quote, and a
/// backslash escapes the next character with MySQL's meanings (`\n`, `\t`, `\0`, ...; any other
/// character stands for itself).
fn lex_string(text: &str, i: &mut usize) -> Result<String, SyntaxError> {
    let bytes = text.as_bytes();
    let quote = bytes[*i];
    let mut s = Vec::new();
    *i += 1;
    let unterminated =
        |s: &[u8]| SyntaxError::at(bytes.len(), Some(String::from_utf8_lossy(s).into_owned()));
    loop {
        let Some(&c) = bytes.get(*i) else {
            return Err(unterminated(&s));
        };
        *i += 1;
        if c == b'\\' {
            let Some(&escaped) = bytes.get(*i) else {
                return Err(unterminated(&s));
            };
            *i += 1;
            s.push(match escaped {
                b'0' => 0,
                b'b' => 8,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'Z' => 26,
                other => other,
            });
        } else if c == quote && bytes.get(*i) == Some(&quote) {
            s.push(quote);
            *i += 1;
        } else if c == quote {
            // Escapes only ever replace ASCII bytes, so the bytes are still UTF-8.
            return Ok(String::from_utf8_lossy(&s).into_owned());
        } else {
            s.push(c);
        }
    }
}

/// A backtick-quoted name from `text[*i]` on; a doubled backtick is one backtick.
fn lex_quoted_name(text: &str, i: &mut usize) -> Result<String, SyntaxError> {
    let mut name = String::new();
    *i += 1;
    loop {
        match text[*i..].chars().next() {
            None => return Err(SyntaxError::at(text.len(), Some(name))),
            Some('`') if text[*i + 1..].starts_with('`') => {
                name.push('`');
                *i += 2;
            }
            Some('`') => {
                *i += 1;
                break;
            }
            Some(ch) => {
                name.push(ch);
                *i += ch.len_utf8();
            }
        }
    }
    if name.is_empty() {
        return Err(SyntaxError::at(*i, None));
    }
    Ok(name)
}

/// A number from `text[*i]` on, scanned like the server's tokenizer: digits, a fraction, an
/// exponent, or `0x` and hex digits. A letter right after it is an error.
fn lex_number(text: &str, i: &mut usize) -> Result<(Tok, String), SyntaxError> {
    let bytes = text.as_bytes();
    let start = *i;
    let skip_digits = |i: &mut usize, radix: u32| {
        while bytes.get(*i).is_some_and(|&c| (c as char).is_digit(radix)) {
            *i += 1;
        }
    };
    let mut float = false;
    if bytes[*i] == b'0' && matches!(bytes.get(*i + 1), Some(b'x' | b'X')) {
        *i += 2;
        skip_digits(i, 16);
        float = true;
    } else {
        if bytes[*i] != b'.' {
            skip_digits(i, 10);
        }
        if bytes.get(*i) == Some(&b'.') {
            float = true;
            *i += 1;
            skip_digits(i, 10);
        }
        if matches!(bytes.get(*i), Some(b'e' | b'E')) {
            float = true;
            *i += 1;
            if matches!(bytes.get(*i), Some(b'+' | b'-')) {
                *i += 1;
            }
            skip_digits(i, 10);
        }
    }
    let literal = text[start..*i].to_string();
    if bytes.get(*i).is_some_and(|&c| is_letter(c)) {
        return Err(SyntaxError::at(*i, Some(literal)));
    }
    let tok = if float {
        Tok::Float(literal.clone())
    } else {
        Tok::Integral(literal.clone())
    };
    Ok((tok, literal))
}

// ---------------------------------------------------------------------------------------------
// Syntax

/// A value expression as written, on either side of an operator.
#[derive(Debug, Clone, PartialEq)]
enum RawValue {
    Str(String),
    /// Digits, with a `-` when the grammar folded a sign into them.
    Integral(String),
    Float(String),
    Bool(bool),
    Null,
    /// A sign in front of anything but an integer. The server's grammar keeps it as an
    /// expression of its own, which no conversion accepts: `-1.5` is refused, `-1` is not.
    Signed,
    /// An unquoted (or backticked) name.
    Column(String),
}

impl RawValue {
    /// The Go type of the server's syntax node, as its messages name it.
    fn go_type(&self) -> &'static str {
        match self {
            RawValue::Str(_) | RawValue::Integral(_) | RawValue::Float(_) => "*sqlparser.SQLVal",
            RawValue::Bool(_) => "sqlparser.BoolVal",
            RawValue::Null => "*sqlparser.NullVal",
            RawValue::Signed => "*sqlparser.UnaryExpr",
            RawValue::Column(_) => "*sqlparser.ColName",
        }
    }
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

/// A comparison's operator as written. The grammar takes more operators than the converter
/// accepts; the refused ones are kept so that the error names them as the server's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawOp {
    Cmp(CmpOp),
    NullSafeEq,
    StartsWith { negated: bool },
    Like { negated: bool },
    Regexp { negated: bool },
}

impl RawOp {
    /// The server's name of the operator (its parser's `*Str` constants).
    fn text(self) -> &'static str {
        match self {
            RawOp::Cmp(CmpOp::Eq) => "=",
            RawOp::Cmp(CmpOp::Ne) => "!=",
            RawOp::Cmp(CmpOp::Lt) => "<",
            RawOp::Cmp(CmpOp::Le) => "<=",
            RawOp::Cmp(CmpOp::Gt) => ">",
            RawOp::Cmp(CmpOp::Ge) => ">=",
            RawOp::NullSafeEq => "<=>",
            RawOp::StartsWith { negated: false } => "starts_with",
            RawOp::StartsWith { negated: true } => "not starts_with",
            RawOp::Like { negated: false } => "like",
            RawOp::Like { negated: true } => "not like",
            RawOp::Regexp { negated: false } => "regexp",
            RawOp::Regexp { negated: true } => "not regexp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IsSuffix {
    Null,
    True,
    False,
}

/// A condition as written.
#[derive(Debug, Clone, PartialEq)]
enum RawCondition {
    Compare(RawValue, RawOp, RawValue),
    In(RawValue, Vec<RawValue>, bool),
    Between(RawValue, RawValue, RawValue, bool),
    Is(RawValue, IsSuffix, bool),
    /// A value with no operator: valid syntax, refused when converting.
    Bare(RawValue),
}

/// A filter in postfix order: conditions, and the logic that combines what they leave on a
/// stack (NOT takes one value, AND and OR two). Flat, so that nothing has to recurse however
/// deeply a query nests.
#[derive(Debug, Clone, PartialEq)]
enum Step<L> {
    Leaf(L),
    Not,
    And,
    Or,
}

/// What the filter's parser has read and not yet applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Not,
    And,
    Or,
    Open,
}

impl Pending {
    /// Whether this operator, waiting on the stack, applies before `next` is pushed: NOT binds
    /// tighter than AND, AND tighter than OR, and both associate to the left.
    fn applies_before(self, next: Pending) -> bool {
        match self {
            Pending::Not => true,
            Pending::And => matches!(next, Pending::And | Pending::Or),
            Pending::Or => next == Pending::Or,
            Pending::Open => false,
        }
    }
}

struct Statement {
    filter: Option<Vec<Step<RawCondition>>>,
    group_by: Vec<String>,
    order_by: Vec<String>,
    limit: bool,
}

/// The server parser's limit on parentheses, NOTs and signs open at once.
const MAX_NESTING: usize = 200;
/// The server parser's limit on the depth of a statement's syntax tree.
const MAX_TREE_DEPTH: usize = 1000;
/// The statement and its WHERE clause sit above the filter in that tree.
const FILTER_DEPTH: usize = 2;
/// A column name node holds a table name node, which holds its two identifiers.
const COLUMN_HEIGHT: usize = 2;

/// The server's grammar, read with explicit stacks rather than recursion. Every part parsed
/// also comes with the height it has in the server's syntax tree, so that the depth limit
/// applies where it does there.
struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Length of the query: errors at its end are there.
    len: usize,
    nesting: usize,
    /// Set once the server's tree would be deeper than its limit; parsing goes on, because a
    /// syntax error further on is what the server reports first.
    too_deep: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|t| &t.tok)
    }

    fn error(&self) -> SyntaxError {
        match self.tokens.get(self.pos) {
            Some(t) => SyntaxError::at(t.end, t.near.clone()),
            None => SyntaxError::at(self.len, None),
        }
    }

    fn at_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(s)) if s.eq_ignore_ascii_case(kw))
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        let found = self.at_keyword(kw);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect_keyword(&mut self, kw: &str) -> Result<(), SyntaxError> {
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

    fn expect_sym(&mut self, sym: &str) -> Result<(), SyntaxError> {
        if self.eat_sym(sym) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// Counts the parenthesis, NOT or sign just taken as open.
    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.nesting += 1;
        if self.nesting < MAX_NESTING {
            return Ok(());
        }
        let token = &self.tokens[self.pos - 1];
        Err(SyntaxError {
            reason: "max nesting level reached",
            end: token.end,
            near: token.near.clone(),
        })
    }

    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// Notes a part of the filter `height` levels tall in the server's tree.
    fn check_depth(&mut self, height: usize) {
        self.too_deep |= FILTER_DEPTH + height >= MAX_TREE_DEPTH;
    }

    fn statement(&mut self, with_filter: bool) -> Result<Statement, SyntaxError> {
        let filter = if with_filter {
            Some(self.filter()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_keyword("group") {
            self.expect_keyword("by")?;
            group_by = self.columns(false)?;
        }
        let mut order_by = Vec::new();
        if self.eat_keyword("order") {
            self.expect_keyword("by")?;
            order_by = self.columns(true)?;
        }
        let limit = self.eat_keyword("limit");
        if limit {
            self.value()?;
            if self.eat_sym(",") || self.eat_keyword("offset") {
                self.value()?;
            }
        }
        self.eat_sym(";");
        if self.pos < self.tokens.len() {
            return Err(self.error());
        }
        Ok(Statement {
            filter,
            group_by,
            order_by,
            limit,
        })
    }

    fn columns(&mut self, sorted: bool) -> Result<Vec<String>, SyntaxError> {
        let mut names = Vec::new();
        loop {
            names.push(self.column()?);
            if sorted {
                let _ = self.eat_keyword("asc") || self.eat_keyword("desc");
            }
            if !self.eat_sym(",") {
                return Ok(names);
            }
        }
    }

    fn column(&mut self) -> Result<String, SyntaxError> {
        let name = match self.peek() {
            Some(Tok::Word(name)) if !is_reserved(name) => name.clone(),
            Some(Tok::Quoted(name)) => name.clone(),
            _ => return Err(self.error()),
        };
        self.pos += 1;
        Ok(name)
    }

    /// Precedence climbing over NOT, AND, OR and parentheses.
    fn filter(&mut self) -> Result<Vec<Step<RawCondition>>, SyntaxError> {
        let mut program = Vec::new();
        // The height of each server subtree `program` leaves on its stack.
        let mut heights = Vec::new();
        let mut pending = Vec::new();
        let mut open = 0;
        loop {
            // An operand: NOTs and opening parentheses, then a condition.
            loop {
                if self.eat_keyword("not") {
                    self.enter()?;
                    pending.push(Pending::Not);
                } else if self.eat_sym("(") {
                    self.enter()?;
                    pending.push(Pending::Open);
                    open += 1;
                } else {
                    break;
                }
            }
            let (condition, height) = self.condition()?;
            program.push(Step::Leaf(condition));
            heights.push(height);
            // After it: closing parentheses, then AND, OR or the end of the filter.
            let next = loop {
                if self.eat_keyword("and") || self.eat_sym("&&") {
                    break Pending::And;
                }
                if self.eat_keyword("or") || self.eat_sym("||") {
                    break Pending::Or;
                }
                if open == 0 {
                    while let Some(top) = pending.pop() {
                        self.apply(top, &mut program, &mut heights);
                    }
                    return Ok(program);
                }
                self.expect_sym(")")?;
                while let Some(top) = pending.pop().filter(|top| *top != Pending::Open) {
                    self.apply(top, &mut program, &mut heights);
                }
                open -= 1;
                self.leave();
                // The server's tree keeps the parentheses as a node.
                if let Some(height) = heights.last_mut() {
                    *height += 1;
                    let height = *height;
                    self.check_depth(height);
                }
            };
            while let Some(&top) = pending.last().filter(|top| top.applies_before(next)) {
                pending.pop();
                self.apply(top, &mut program, &mut heights);
            }
            pending.push(next);
        }
    }

    /// Appends an operator to the program, combining the heights of its operands.
    fn apply(
        &mut self,
        op: Pending,
        program: &mut Vec<Step<RawCondition>>,
        heights: &mut Vec<usize>,
    ) {
        let mut operand = || heights.pop().expect("an operator follows its operands");
        let height = match op {
            Pending::Not => {
                self.leave();
                program.push(Step::Not);
                operand() + 1
            }
            Pending::And | Pending::Or => {
                program.push(if op == Pending::And {
                    Step::And
                } else {
                    Step::Or
                });
                let (right, left) = (operand(), operand());
                1 + left.max(right)
            }
            Pending::Open => unreachable!("parentheses are closed, not applied"),
        };
        heights.push(height);
        self.check_depth(height);
    }

    fn condition(&mut self) -> Result<(RawCondition, usize), SyntaxError> {
        let (left, left_height) = self.value()?;
        if self.eat_keyword("is") {
            let negated = self.eat_keyword("not");
            let suffix = if self.eat_keyword("null") {
                IsSuffix::Null
            } else if self.eat_keyword("true") {
                IsSuffix::True
            } else if self.eat_keyword("false") {
                IsSuffix::False
            } else {
                return Err(self.error());
            };
            return Ok((RawCondition::Is(left, suffix, negated), 1 + left_height));
        }
        let negated = self.eat_keyword("not");
        if self.eat_keyword("in") {
            self.expect_sym("(")?;
            self.enter()?;
            let mut values = Vec::new();
            let mut tuple_height = 0;
            loop {
                let (value, height) = self.value()?;
                values.push(value);
                tuple_height = tuple_height.max(1 + height);
                if !self.eat_sym(",") {
                    break;
                }
            }
            self.expect_sym(")")?;
            self.leave();
            let height = 1 + left_height.max(tuple_height);
            return Ok((RawCondition::In(left, values, negated), height));
        }
        if self.eat_keyword("between") {
            let (lo, lo_height) = self.value()?;
            if !(self.eat_keyword("and") || self.eat_sym("&&")) {
                return Err(self.error());
            }
            let (hi, hi_height) = self.value()?;
            let height = 1 + left_height.max(lo_height).max(hi_height);
            return Ok((RawCondition::Between(left, lo, hi, negated), height));
        }
        let op = if self.eat_keyword("starts_with") {
            RawOp::StartsWith { negated }
        } else if self.eat_keyword("like") {
            RawOp::Like { negated }
        } else if self.eat_keyword("regexp") || self.eat_keyword("rlike") {
            RawOp::Regexp { negated }
        } else if negated {
            return Err(self.error());
        } else if let Some(op) = self.comparison_operator() {
            op
        } else {
            return Ok((RawCondition::Bare(left), left_height));
        };
        let (right, right_height) = self.value()?;
        let height = 1 + left_height.max(right_height);
        Ok((RawCondition::Compare(left, op, right), height))
    }

    fn comparison_operator(&mut self) -> Option<RawOp> {
        let op = match self.peek()? {
            Tok::Sym("=") => RawOp::Cmp(CmpOp::Eq),
            Tok::Sym("!=" | "<>") => RawOp::Cmp(CmpOp::Ne),
            Tok::Sym("<") => RawOp::Cmp(CmpOp::Lt),
            Tok::Sym("<=") => RawOp::Cmp(CmpOp::Le),
            Tok::Sym(">") => RawOp::Cmp(CmpOp::Gt),
            Tok::Sym(">=") => RawOp::Cmp(CmpOp::Ge),
            Tok::Sym("<=>") => RawOp::NullSafeEq,
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn value(&mut self) -> Result<(RawValue, usize), SyntaxError> {
        // The grammar nests signs (each one counts as open) and folds them into an integer's
        // digits (`- -3` is `3`); in front of anything else they stay expressions.
        let mut signs = 0;
        let mut negative = false;
        while let Some(Tok::Sym(sign @ ("-" | "+"))) = self.peek() {
            negative ^= *sign == "-";
            self.pos += 1;
            signs += 1;
            self.enter()?;
        }
        let (value, height) = self.unsigned_value()?;
        self.nesting -= signs;
        Ok(match value {
            _ if signs == 0 => (value, height),
            RawValue::Integral(digits) if negative => (RawValue::Integral(format!("-{digits}")), 0),
            integral @ RawValue::Integral(_) => (integral, 0),
            _ => (RawValue::Signed, height + signs),
        })
    }

    fn unsigned_value(&mut self) -> Result<(RawValue, usize), SyntaxError> {
        let tokens = self.tokens;
        let Some(token) = tokens.get(self.pos) else {
            return Err(self.error());
        };
        let value = match &token.tok {
            Tok::Str(s) => RawValue::Str(s.clone()),
            Tok::Integral(digits) => RawValue::Integral(digits.clone()),
            Tok::Float(literal) => RawValue::Float(literal.clone()),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => RawValue::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => RawValue::Bool(false),
            Tok::Word(w) if w.eq_ignore_ascii_case("null") => RawValue::Null,
            Tok::Word(w) if !is_reserved(w) => RawValue::Column(w.clone()),
            Tok::Quoted(name) => RawValue::Column(name.clone()),
            _ => return Err(self.error()),
        };
        self.pos += 1;
        let height = if matches!(value, RawValue::Column(_)) {
            COLUMN_HEIGHT
        } else {
            0
        };
        Ok((value, height))
    }
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

/// A condition, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
enum Predicate {
    Compare(Column, CmpOp, Value),
    In(Column, Vec<Value>, bool),
    Between(Column, Value, Value, bool),
    StartsWith(Column, String, bool),
    IsNull(Column, bool),
}

type Filter = Vec<Step<Predicate>>;

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
        // The server parses `select * from table1 where <query>`, leaving out the `where` when
        // the query is empty or starts with exactly `order by` or `group by`.
        let lower = text.to_ascii_lowercase();
        let with_filter =
            !text.is_empty() && !lower.starts_with("order by") && !lower.starts_with("group by");
        let prefix = if with_filter {
            "select * from table1 where "
        } else {
            "select * from table1 "
        }
        .len();
        let syntax = |e: SyntaxError| e.into_query_error(prefix);
        let tokens = lex(text).map_err(syntax)?;
        let mut parser = Parser {
            tokens: &tokens,
            pos: 0,
            len: text.len(),
            nesting: 0,
            too_deep: false,
        };
        let st = parser.statement(with_filter).map_err(syntax)?;
        if parser.too_deep {
            return Err(QueryError(
                "malformed SQL query: max ast depth reached".into(),
            ));
        }
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
        // The server resolves the sort columns before its SQL store refuses sorting at all.
        for name in &st.order_by {
            if resolve(name)?.kind == SearchAttributeType::Text {
                return Err(unsupported(format!(
                    "unable to sort by search attribute type {}",
                    SearchAttributeType::Text.name()
                )));
            }
        }
        if !st.order_by.is_empty() {
            return Err(unsupported("'ORDER BY' clause"));
        }
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

/// Conditions convert in the order they are written (postfix keeps it), as the server
/// converts left before right: the first refused one is the one reported.
fn convert(
    program: Vec<Step<RawCondition>>,
    resolve: &impl Fn(&str) -> Result<Column, QueryError>,
) -> Result<Filter, QueryError> {
    program
        .into_iter()
        .map(|step| {
            Ok(match step {
                Step::Leaf(c) => Step::Leaf(convert_condition(c, resolve)?),
                Step::Not => Step::Not,
                Step::And => Step::And,
                Step::Or => Step::Or,
            })
        })
        .collect()
}

/// In the server's order: the column, then the values, then whether the column's type takes
/// the operator. So `Score STARTS_WITH 'a'` on an Int is refused for its value.
fn convert_condition(
    c: RawCondition,
    resolve: &impl Fn(&str) -> Result<Column, QueryError>,
) -> Result<Predicate, QueryError> {
    use SearchAttributeType::*;
    let column = |v: RawValue| match v {
        RawValue::Column(name) => resolve(&name),
        other => Err(invalid(format!(
            "must be a column name but was {}",
            other.go_type()
        ))),
    };
    match c {
        RawCondition::Bare(RawValue::Column(_)) => Err(invalid("incomplete expression")),
        RawCondition::Bare(other) => Err(unsupported(format!(
            "expression of type {}",
            other.go_type()
        ))),
        RawCondition::Compare(left, op, right) => {
            let col = column(left)?;
            let value = convert_value(&col, right)?;
            check_operator(&col, op.text())?;
            match (op, value) {
                (RawOp::Cmp(cmp), value) => Ok(Predicate::Compare(col, cmp, value)),
                (RawOp::StartsWith { negated }, Value::Str(prefix)) => {
                    Ok(Predicate::StartsWith(col, prefix, negated))
                }
                // No type takes the others, so check_operator has refused them already.
                (op, _) => Err(operator_not_supported(&col, op.text())),
            }
        }
        RawCondition::In(left, values, negated) => {
            let col = column(left)?;
            let values = values
                .into_iter()
                .map(|v| convert_value(&col, v))
                .collect::<Result<_, _>>()?;
            check_operator(&col, if negated { "not in" } else { "in" })?;
            Ok(Predicate::In(col, values, negated))
        }
        RawCondition::Between(left, lo, hi, negated) => {
            let col = column(left)?;
            if !matches!(col.kind, Datetime | Double | Int | Keyword) {
                return Err(invalid(format!(
                    "cannot do range condition on search attribute '{}' of type {}",
                    col.name,
                    col.kind.name()
                )));
            }
            let lo = convert_value(&col, lo)?;
            let hi = convert_value(&col, hi)?;
            Ok(Predicate::Between(col, lo, hi, negated))
        }
        RawCondition::Is(left, suffix, negated) => {
            let col = column(left)?;
            match suffix {
                IsSuffix::Null => Ok(Predicate::IsNull(col, negated)),
                IsSuffix::True | IsSuffix::False => Err(invalid(
                    "'IS' operator can only be used as 'IS NULL' or 'IS NOT NULL'",
                )),
            }
        }
    }
}

/// The server converter's operator lists, per type.
fn check_operator(col: &Column, op: &str) -> Result<(), QueryError> {
    use SearchAttributeType::*;
    const COMPARISON: &[&str] = &["=", "!=", "<", ">", "<=", ">=", "in", "not in"];
    let supported = match col.kind {
        Keyword => COMPARISON.contains(&op) || ["starts_with", "not starts_with"].contains(&op),
        KeywordList => ["=", "!=", "in", "not in"].contains(&op),
        Text => ["=", "!="].contains(&op),
        Int | Double | Bool | Datetime => COMPARISON.contains(&op),
    };
    if supported {
        Ok(())
    } else {
        Err(operator_not_supported(col, op))
    }
}

fn operator_not_supported(col: &Column, op: &str) -> QueryError {
    unsupported(format!(
        "operator '{}' not supported for {} type search attribute '{}'",
        op.to_uppercase(),
        col.kind.name(),
        col.name
    ))
}

/// A literal as the server's `sqlquery.ParseValue` reads it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Literal {
    /// Go's `%#v` of the value and its Go type, as the server's messages print them.
    fn go_repr(&self) -> (String, &'static str) {
        match self {
            Literal::Str(s) => (format!("{s:?}"), "string"),
            Literal::Int(i) => (i.to_string(), "int64"),
            Literal::Float(f) => (go_float(*f), "float64"),
            Literal::Bool(b) => (b.to_string(), "bool"),
        }
    }
}

/// Go's `%v` of a float64: the shortest digits that read back, with an exponent of at least
/// two digits (`1e+06`, `1.5e-05`) when it is below -4 or 6 and above.
fn go_float(f: f64) -> String {
    let scientific = format!("{f:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if f == 0.0 || (-4..6).contains(&exponent) {
        f.to_string()
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

fn literal(v: RawValue) -> Result<Literal, QueryError> {
    match v {
        // The server reads a string back out of `'<string>'` with `strings.Trim(_, "'")`,
        // which also drops every quote at either end of the string itself: `'''a'''` is `a`.
        RawValue::Str(s) => Ok(Literal::Str(s.trim_matches('\'').to_string())),
        RawValue::Integral(text) | RawValue::Float(text) => {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Literal::Int(n));
            }
            // Go's ParseFloat refuses what overflows, where Rust's reads infinity.
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Literal::Float(f)),
                _ => Err(invalid(format!("unable to parse value {text:?}"))),
            }
        }
        RawValue::Bool(b) => Ok(Literal::Bool(b)),
        RawValue::Column(name) => Err(unsupported(format!(
            "column name on the right side of comparison expression (did you forget to quote {name:?}?)"
        ))),
        other @ (RawValue::Null | RawValue::Signed) => Err(invalid(format!(
            "unexpected value type {}",
            other.go_type()
        ))),
    }
}

fn convert_value(col: &Column, v: RawValue) -> Result<Value, QueryError> {
    use SearchAttributeType::*;
    let v = literal(v)?;
    match col.name.as_str() {
        "ExecutionStatus" => return execution_status(&v).map(Value::Str),
        "ExecutionDuration" => {
            return match v {
                Literal::Int(n) => Ok(Value::Num(n as f64)),
                Literal::Str(s) => parse_go_duration(&s)
                    .map(|n| Value::Num(n as f64))
                    .ok_or_else(|| {
                        invalid(format!(
                            "invalid duration value for search attribute ExecutionDuration: {s}"
                        ))
                    }),
                other => Err(invalid(format!(
                    "unexpected value type {} for search attribute ExecutionDuration",
                    other.go_repr().1
                ))),
            };
        }
        _ => {}
    }
    // The server passes `true`/`false` on without checking them against the column's type
    // (the SQL database then coerces them, and for ExecutionStatus the server panics); here
    // they are refused like any other literal of the wrong type.
    match (col.kind, v) {
        (Int | Double, Literal::Int(n)) => Ok(Value::Num(n as f64)),
        (Int | Double, Literal::Float(n)) => Ok(Value::Num(n)),
        (Bool, Literal::Bool(b)) => Ok(Value::Bool(b)),
        (Datetime, Literal::Int(n)) => Ok(Value::Time(n)),
        (Datetime, Literal::Str(s)) => parse_query_datetime(&s)
            .map(Value::Time)
            .ok_or_else(|| invalid(format!("unable to parse datetime '{s}'"))),
        (Keyword | KeywordList | Text, Literal::Str(s)) => Ok(Value::Str(s)),
        (_, v) => {
            let (repr, go_type) = v.go_repr();
            Err(invalid(format!(
                "invalid value type for search attribute {} of type {}: {repr} (type: {go_type})",
                col.name,
                col.kind.name()
            )))
        }
    }
}

const STATUS_NAMES: &[(WorkflowStatus, &str)] = &[
    (WorkflowStatus::Running, "Running"),
    (WorkflowStatus::Completed, "Completed"),
    (WorkflowStatus::Failed, "Failed"),
    (WorkflowStatus::Canceled, "Canceled"),
    (WorkflowStatus::Terminated, "Terminated"),
    (WorkflowStatus::ContinuedAsNew, "ContinuedAsNew"),
    (WorkflowStatus::TimedOut, "TimedOut"),
];

/// The name visibility shows for a status (`'Running'`, `'Completed'`, ...).
pub fn status_name(status: WorkflowStatus) -> &'static str {
    STATUS_NAMES
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("Unspecified", |(_, n)| n)
}

/// The short name of a proto status (`CONTINUED_AS_NEW` is `ContinuedAsNew`).
fn short_status_name(status: WorkflowExecutionStatus) -> String {
    let screaming = status.as_str_name();
    let screaming = screaming
        .strip_prefix("WORKFLOW_EXECUTION_STATUS_")
        .unwrap_or(screaming);
    screaming
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}

/// A status by its proto name (`WORKFLOW_EXECUTION_STATUS_COMPLETED`), its short name
/// (`Completed`) or its number, exactly as the server's enum helpers take them, Unspecified and
/// statuses no run here has included (they match nothing). The value is the short name, which
/// is how a record's status compares.
fn execution_status(v: &Literal) -> Result<String, QueryError> {
    let status = match v {
        Literal::Int(n) => i32::try_from(*n)
            .ok()
            .and_then(|n| WorkflowExecutionStatus::try_from(n).ok()),
        Literal::Str(s) => WorkflowExecutionStatus::from_str_name(s).or_else(|| {
            // The enum's values are 0, 1, 2, ... without gaps.
            (0..)
                .map_while(|n| WorkflowExecutionStatus::try_from(n).ok())
                .find(|status| short_status_name(*status) == *s)
        }),
        other => {
            return Err(invalid(format!(
                "unexpected value type {} for search attribute ExecutionStatus",
                other.go_repr().1
            )));
        }
    };
    match (status, v) {
        (Some(status), _) => Ok(short_status_name(status)),
        (None, Literal::Str(s)) => Err(invalid(format!("invalid ExecutionStatus value '{s}'"))),
        (None, other) => Err(invalid(format!(
            "invalid ExecutionStatus value {}",
            other.go_repr().0
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

/// RFC 3339 as Go's JSON decoding of a `time.Time` reads it, which is how the server reads a
/// Datetime search attribute: `2006-01-02T15:04:05[.fraction](Z|±hh:mm)`, upper-case `T` and
/// `Z`, every field in range (no leap second, no February 30th), digits past nanoseconds
/// dropped. Unix nanoseconds.
pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    parse_datetime(s, false)
}

/// A Datetime literal in a query. The server reads it with Go's `time.Parse(time.RFC3339Nano,
/// _)`, which retries with its layout parser when the strict form fails; that one also takes
/// a one-digit hour, a comma before the fraction, and zone offsets up to 24:60.
fn parse_query_datetime(s: &str) -> Option<Nanos> {
    parse_datetime(s, true)
}

fn parse_datetime(s: &str, layout_parser: bool) -> Option<Nanos> {
    let b = s.as_bytes();
    let number = |i: &mut usize, len: usize| -> Option<i64> {
        let digits = b.get(*i..*i + len)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        *i += len;
        s[*i - len..*i].parse().ok()
    };
    let literal = |i: &mut usize, c: u8| -> Option<()> { (b.get(*i) == Some(&c)).then(|| *i += 1) };
    let mut i = 0;
    let year = number(&mut i, 4)?;
    literal(&mut i, b'-')?;
    let month = number(&mut i, 2)?;
    literal(&mut i, b'-')?;
    let day = number(&mut i, 2)?;
    literal(&mut i, b'T')?;
    let one_digit_hour = layout_parser && b.get(i + 1) == Some(&b':');
    let hour = number(&mut i, if one_digit_hour { 1 } else { 2 })?;
    literal(&mut i, b':')?;
    let minute = number(&mut i, 2)?;
    literal(&mut i, b':')?;
    let second = number(&mut i, 2)?;
    let mut nanos = 0;
    let fraction = matches!(b.get(i), Some(b'.')) || (layout_parser && b.get(i) == Some(&b','));
    if fraction && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let kept = &s[i + 1..i + 1 + digits.min(9)];
        nanos = kept.parse::<i64>().ok()? * 10i64.pow(9 - kept.len() as u32);
        i += 1 + digits;
    }
    let (max_offset_hour, max_offset_minute) = if layout_parser { (24, 60) } else { (23, 59) };
    let offset_secs = match &b[i..] {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (mut h, mut m) = (i + 1, i + 4);
            let (hours, minutes) = (number(&mut h, 2)?, number(&mut m, 2)?);
            if hours > max_offset_hour || minutes > max_offset_minute {
                return None;
            }
            let secs = (hours * 60 + minutes) * 60;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
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

/// Runs the postfix program on a stack of three-valued results (None: unknown).
fn eval(filter: &Filter, r: &VisibilityRecord) -> Option<bool> {
    let mut stack: Vec<Option<bool>> = Vec::new();
    for step in filter {
        // `pop()?` gives up (unknown) on a program short of operands; the parser makes none.
        let value = match step {
            Step::Leaf(p) => eval_predicate(p, r),
            Step::Not => stack.pop()?.map(|b| !b),
            Step::And => match (stack.pop()?, stack.pop()?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Step::Or => match (stack.pop()?, stack.pop()?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        };
        stack.push(value);
    }
    stack.pop()?
}

fn eval_predicate(p: &Predicate, r: &VisibilityRecord) -> Option<bool> {
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
        Predicate::StartsWith(col, prefix, negated) => match field(r, col)? {
            Field::Str(s) => Some(s.starts_with(prefix.as_str()) != *negated),
            _ => None,
        },
    }
}
