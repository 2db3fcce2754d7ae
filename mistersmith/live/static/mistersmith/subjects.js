/**
 * NATS subject patterns for the event log's live filter: "agent.*.events", "supervision.>".
 *
 * The rules are those of mistersmith/console/event_log/subjects.py (the replay checks the same way):
 * tokens are separated by dots, "*" stands for exactly one token, ">" (last token only) for one
 * or more; a wildcard inside a token ("agent*") is refused, as NATS would read it literally.
 */

export const MAX_PATTERN_LENGTH = 255;

export class BadPattern extends Error {}

/** The pattern's tokens; throws BadPattern with the reason. */
export function parsePattern(pattern) {
  if (typeof pattern !== "string" || pattern === "") throw new BadPattern("The subject pattern is empty.");
  if (pattern.length > MAX_PATTERN_LENGTH)
    throw new BadPattern(`The subject pattern is longer than ${MAX_PATTERN_LENGTH} characters.`);
  if (/\s/.test(pattern)) throw new BadPattern("A subject pattern has no spaces.");
  const tokens = pattern.split(".");
  tokens.forEach((token, index) => {
    if (token === "") throw new BadPattern(`"${pattern}" has an empty token (two dots in a row, or a dot at an end).`);
    if (token !== "*" && token !== ">" && (token.includes("*") || token.includes(">")))
      throw new BadPattern(`In "${pattern}", a wildcard must be a whole token (like agent.*.events).`);
    if (token === ">" && index !== tokens.length - 1)
      throw new BadPattern(`In "${pattern}", ">" may only be the last token.`);
  });
  return tokens;
}

/** A predicate for concrete subjects (parse once, match many); throws BadPattern. */
export function compilePattern(pattern) {
  const tokens = parsePattern(pattern);
  return (subject) => {
    const parts = String(subject).split(".");
    for (let index = 0; index < tokens.length; index += 1) {
      const token = tokens[index];
      if (token === ">") return parts.length > index;
      if (index >= parts.length || (token !== "*" && token !== parts[index])) return false;
    }
    return parts.length === tokens.length;
  };
}

/** Whether a concrete subject falls under the pattern; throws BadPattern for a bad pattern. */
export function subjectMatches(pattern, subject) {
  return compilePattern(pattern)(subject);
}
