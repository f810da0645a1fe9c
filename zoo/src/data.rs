//! The data model of the log-based modes: per key one object — a set, a list or a
//! register — and the deterministic application of a replicated [`Cmd`] to it, with
//! the answer the client gets. Every replica applying the same commands in the same
//! order holds the same data.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::{Cmd, DataImage, Element};

/// The object under one key; its kind is fixed by the first command that creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Set(BTreeSet<Element>),
    List(Vec<Element>),
    Register(Element),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Set(_) => "set",
            Object::List(_) => "list",
            Object::Register(_) => "register",
        }
    }
}

/// Why a command changed nothing (the client sees it as a `not_applied` error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("key `{key}` holds a {found}, not a {wanted}")]
    WrongType {
        key: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("cas on `{key}`: expected {expected}, found {}", found.map_or("nothing".to_string(), |v| v.to_string()))]
    CasMismatch {
        key: String,
        expected: Element,
        found: Option<Element>,
    },
}

/// All keys of one node.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Data {
    objects: BTreeMap<String, Object>,
}

impl Data {
    /// Applies `cmd`; a refused command leaves the data unchanged.
    pub fn apply(&mut self, cmd: &Cmd) -> Result<(), ApplyError> {
        match cmd {
            Cmd::Noop => Ok(()),
            Cmd::Add { key, value } => {
                match self
                    .objects
                    .entry(key.clone())
                    .or_insert_with(|| Object::Set(BTreeSet::new()))
                {
                    Object::Set(s) => {
                        s.insert(*value);
                        Ok(())
                    }
                    other => Err(wrong(key, other, "set")),
                }
            }
            Cmd::Append { key, value } => {
                match self
                    .objects
                    .entry(key.clone())
                    .or_insert_with(|| Object::List(Vec::new()))
                {
                    Object::List(l) => {
                        l.push(*value);
                        Ok(())
                    }
                    other => Err(wrong(key, other, "list")),
                }
            }
            Cmd::Write { key, value } => match self.objects.get_mut(key) {
                None => {
                    self.objects.insert(key.clone(), Object::Register(*value));
                    Ok(())
                }
                Some(Object::Register(r)) => {
                    *r = *value;
                    Ok(())
                }
                Some(other) => Err(wrong(key, other, "register")),
            },
            Cmd::Cas { key, from, to } => match self.objects.get_mut(key) {
                Some(Object::Register(r)) if *r == *from => {
                    *r = *to;
                    Ok(())
                }
                Some(Object::Register(r)) => Err(ApplyError::CasMismatch {
                    key: key.clone(),
                    expected: *from,
                    found: Some(*r),
                }),
                None => Err(ApplyError::CasMismatch {
                    key: key.clone(),
                    expected: *from,
                    found: None,
                }),
                Some(other) => Err(wrong(key, other, "register")),
            },
        }
    }

    /// Whether `cmd` would apply, without applying it.
    pub fn check(&self, cmd: &Cmd) -> Result<(), ApplyError> {
        let (key, wanted) = match cmd {
            Cmd::Noop => return Ok(()),
            Cmd::Add { key, .. } => (key, "set"),
            Cmd::Append { key, .. } => (key, "list"),
            Cmd::Write { key, .. } => (key, "register"),
            Cmd::Cas { key, from, .. } => {
                return match self.register(key)? {
                    Some(v) if v == *from => Ok(()),
                    found => Err(ApplyError::CasMismatch {
                        key: key.clone(),
                        expected: *from,
                        found,
                    }),
                }
            }
        };
        match self.objects.get(key) {
            Some(o) if o.kind() != wanted => Err(wrong(key, o, wanted)),
            _ => Ok(()),
        }
    }

    /// Everything, for a full resync.
    pub fn image(&self) -> DataImage {
        let mut image = DataImage::default();
        for (k, o) in &self.objects {
            match o {
                Object::Set(s) => {
                    image.sets.insert(k.clone(), s.iter().copied().collect());
                }
                Object::List(l) => {
                    image.lists.insert(k.clone(), l.clone());
                }
                Object::Register(r) => {
                    image.registers.insert(k.clone(), *r);
                }
            }
        }
        image
    }

    /// The data an image describes (a key in several maps: the last kind wins).
    pub fn from_image(image: DataImage) -> Data {
        let mut objects = BTreeMap::new();
        for (k, v) in image.sets {
            objects.insert(k, Object::Set(v.into_iter().collect()));
        }
        for (k, v) in image.lists {
            objects.insert(k, Object::List(v));
        }
        for (k, v) in image.registers {
            objects.insert(k, Object::Register(v));
        }
        Data { objects }
    }

    /// Set and list elements plus registers, over all keys.
    pub fn element_count(&self) -> usize {
        self.objects
            .values()
            .map(|o| match o {
                Object::Set(s) => s.len(),
                Object::List(l) => l.len(),
                Object::Register(_) => 1,
            })
            .sum()
    }

    /// The set under `key`, sorted (empty when absent).
    pub fn set(&self, key: &str) -> Result<Vec<Element>, ApplyError> {
        match self.objects.get(key) {
            None => Ok(Vec::new()),
            Some(Object::Set(s)) => Ok(s.iter().copied().collect()),
            Some(other) => Err(wrong(key, other, "set")),
        }
    }

    /// The list under `key` in append order (empty when absent).
    pub fn list(&self, key: &str) -> Result<Vec<Element>, ApplyError> {
        match self.objects.get(key) {
            None => Ok(Vec::new()),
            Some(Object::List(l)) => Ok(l.clone()),
            Some(other) => Err(wrong(key, other, "list")),
        }
    }

    /// The register under `key` (`None` when never written).
    pub fn register(&self, key: &str) -> Result<Option<Element>, ApplyError> {
        match self.objects.get(key) {
            None => Ok(None),
            Some(Object::Register(r)) => Ok(Some(*r)),
            Some(other) => Err(wrong(key, other, "register")),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

fn wrong(key: &str, found: &Object, wanted: &'static str) -> ApplyError {
    ApplyError::WrongType {
        key: key.to_string(),
        found: found.kind(),
        wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_per_kind_and_refusals_change_nothing() {
        let mut d = Data::default();
        let add = |v| Cmd::Add {
            key: "s".into(),
            value: v,
        };
        d.apply(&add(3)).unwrap();
        d.apply(&add(1)).unwrap();
        d.apply(&add(3)).unwrap();
        assert_eq!(d.set("s").unwrap(), vec![1, 3]);
        for v in [5, 4, 5] {
            d.apply(&Cmd::Append {
                key: "l".into(),
                value: v,
            })
            .unwrap();
        }
        assert_eq!(d.list("l").unwrap(), vec![5, 4, 5]);
        let cas = |from, to| Cmd::Cas {
            key: "r".into(),
            from,
            to,
        };
        assert!(matches!(
            d.apply(&cas(0, 1)),
            Err(ApplyError::CasMismatch { found: None, .. })
        ));
        d.apply(&Cmd::Write {
            key: "r".into(),
            value: 7,
        })
        .unwrap();
        let before = d.clone();
        assert_eq!(
            d.apply(&cas(6, 1)).unwrap_err().to_string(),
            "cas on `r`: expected 6, found 7"
        );
        assert_eq!(
            d.apply(&add(9)).map(|_| ()),
            Ok(()),
            "set key untouched by register ops"
        );
        d = before;
        assert_eq!(
            d.apply(&Cmd::Append {
                key: "s".into(),
                value: 1
            })
            .unwrap_err()
            .to_string(),
            "key `s` holds a set, not a list"
        );
        assert!(d.register("l").is_err());
        d.apply(&cas(7, 8)).unwrap();
        assert_eq!(d.register("r").unwrap(), Some(8));
        assert_eq!(d.register("none").unwrap(), None);
        assert_eq!(d.len(), 3);
        assert!(d.check(&cas(8, 9)).is_ok());
        assert!(d.check(&cas(7, 9)).is_err());
        assert!(d.check(&add(1)).is_ok());
        assert!(d
            .check(&Cmd::Write {
                key: "s".into(),
                value: 1
            })
            .is_err());
        let round = Data::from_image(d.image());
        assert_eq!(round, d);
        assert_eq!(d.element_count(), 2 + 3 + 1);
    }
}
