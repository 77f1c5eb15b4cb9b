// The name a person reads: the Vietnamese one with its diacritics (the API's display_name,
// else name_local), the English (ASCII) name only when there is no other.

export function localName(p) {
  return p.display_name || p.name_local || p.name || p.code;
}

// places are named in Vietnamese on the map and in lists, whatever the browser's language
// (the English name is shown on hover)
export const PLACE_LANG = "vi";
