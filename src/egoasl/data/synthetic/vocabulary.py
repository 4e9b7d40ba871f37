"""The words of the synthetic dataset: the official MQ labels, the NLQ entity words, and query tokens."""

from __future__ import annotations

import re

MAX_QUERY_TOKENS = 48
"""Most tokens a synthetic query may have (one text feature row each)."""

# The 110 official MQ labels (format notes, Appendix A), in Python-sorted order. Seven of them
# contain literal double quotes and commas; they are the official strings, kept as they are.
OFFICIAL_MQ_LABELS: tuple[str, ...] = (
    '"clean_/_repair_small_equipment_(mower,_trimmer_etc.)"',
    '"cut_/_chop_/_slice_a_vegetable,_fruit,_or_meat"',
    '"level_ground_/_soil_(eg._using_rake,_shovel,_etc)"',
    '"make_the_bed_/_arrange_pillows,_sheets_etc._on_bed"',
    '"put_on_safety_equipment_(e.g._gloves,_helmet,_safety_goggles)"',
    '"try-out_/_wear_accessories_(e.g._tie,_belt,_scarf)"',
    '"try-out_/_wear_clothing_items_(e.g._shirt,_jeans,_sweater)"',
    'arrange_/_organize_clothes_in_closet/dresser',
    'arrange_/_organize_items_in_fridge',
    'arrange_/_organize_other_items',
    'arrange_pillows_on_couch_/_chair',
    'browse_through_accessories_on_rack_/_shelf',
    'browse_through_clothing_items_on_rack_/_shelf_/_hanger',
    'browse_through_groceries_or_food_items_on_rack_/_shelf',
    'browse_through_other_items_on_rack_/_shelf',
    'chop_/_cut_wood_pieces_using_tool',
    'clean_/_sweep_floor_with_broom',
    'clean_/_wipe_/_oil_metallic_item',
    'clean_/_wipe_a_table_or_kitchen_counter',
    'clean_/_wipe_kitchen_appliance',
    'clean_/_wipe_other_surface_or_object',
    'climb_up_/_down_a_ladder',
    'collect_/_rake_dry_leaves_on_ground',
    'compare_two_clothing_items',
    'converse_/_interact_with_someone',
    'count_money_before_paying',
    'cut_/_trim_grass_with_a_lawnmower',
    'cut_/_trim_grass_with_other_tools',
    'cut_dough',
    'cut_open_a_package_(e.g._with_scissors)',
    'cut_other_item_using_tool',
    'cut_thread_/_paper_/_cardboard_using_scissors_/_knife_/_cutter',
    'cut_tree_branch',
    'dig_or_till_the_soil_by_hand',
    'dig_or_till_the_soil_with_a_hoe_or_other_tool',
    'dismantle_other_item',
    'do_some_exercise',
    'drill_into_wall_/_wood_/_floor_/_metal',
    'drink_beverage',
    'drive_a_vehicle',
    'eat_a_snack',
    'enter_a_supermarket_/_shop',
    'exit_a_supermarket_/_shop',
    'fill_a_pot_/_bottle_/_container_with_water',
    'fix_/_remove_/_replace_a_tire_or_wheel',
    'fix_bonnet_/_engine_of_car',
    'fix_other_item',
    'fix_pipe_/_plumbing',
    'fix_wiring',
    'fold_clothes_/_sheets',
    'fry_dough',
    'fry_other_food_item',
    'hang_clothes_in_closet_/_on_hangers',
    'hang_clothes_to_dry',
    'harvest_vegetables_/_fruits_/_crops_from_plants_on_the_ground',
    'interact_or_play_with_pet_/_animal',
    'iron_clothes_or_sheets',
    'knead_/_shape_/_roll-out_dough',
    'load_/_unload_a_washing_machine_or_dryer',
    'look_at_clothes_in_the_mirror',
    'make_coffee_or_tea_/_use_a_coffee_machine',
    'mark_item_with_pencil_/_pen_/_marker',
    'measure_wooden_item_using_tape_/_ruler',
    'move_/_shift_/_arrange_small_tools',
    'move_/_shift_around_construction_material',
    'pack_food_items_/_groceries_into_bags_/_boxes',
    'pack_other_items_into_bags_/_boxes',
    'pack_soil_into_the_ground_or_a_pot_/_container',
    'paint_using_paint_brush_/_roller',
    'pay_at_billing_counter',
    'peel_a_fruit_or_vegetable',
    'place_items_in_shopping_cart',
    'plant_seeds_/_plants_/_flowers_into_ground',
    'plaster_wall_/_surface',
    'play_a_video_game',
    'play_board_game_or_card_game',
    'prepare_or_apply_cement_/_concrete_/_mortar',
    'put_away_(or_take_out)_dishes_/_utensils_in_storage',
    'put_away_(or_take_out)_food_items_in_the_fridge',
    'put_away_(or_take_out)_ingredients_in_storage',
    'put_food_into_the_oven_to_bake',
    'read_a_book_/_magazine_/_shopping_list_etc.',
    'remove_food_from_the_oven',
    'remove_weeds_from_ground',
    'rinse_/_drain_other_food_item_in_sieve_/_colander',
    'serve_food_onto_a_plate',
    'smoke_cigar_/_cigarette_/_vape',
    'smooth_wood_using_sandpaper_/_sander_/_tool',
    'stand_in_the_queue_/_line_at_a_shop_/_supermarket',
    'stir_/_mix_food_while_cooking',
    'stir_/_mix_ingredients_in_a_bowl_or_pan_(before_cooking)',
    'take_photo_/_record_video_with_a_camera',
    'taste_food_while_cooking',
    'throw_away_trash_/_put_trash_in_trash_can',
    'tie_up_branches_/_plants_with_string',
    'trim_hedges_or_branches',
    'turn-on_/_light_the_stove_burner',
    'use_a_laptop_/_computer',
    'use_a_vacuum_cleaner_to_clean',
    'use_hammer_/_nail-gun_to_fix_nail',
    'use_phone',
    'walk_down_stairs_/_walk_up_stairs',
    'wash_dishes_/_utensils_/_bakeware_etc.',
    'wash_hands',
    'wash_vegetable_/_fruit_/_food_item',
    'watch_television',
    'water_soil_/_plants_/_crops',
    'weigh_food_/_ingredient_using_a_weighing_scale',
    'withdraw_money_from_atm_/_operate_atm',
    'write_notes_in_a_paper_/_book',
)

RAW_TOOL_LABELS: tuple[str, ...] = (
    "load/unload_the_dishwasher",
    "use_the_microwave_/_warm_something_in_the_microwave",
)
"""Annotation-tool labels outside the 110; real files use such strings for non-primary labels."""

OBJECTS: tuple[str, ...] = (
    "knife", "scissors", "phone", "cup", "bowl", "bottle", "keys", "wallet", "towel", "bag",
    "hammer", "screwdriver", "spoon", "plate", "laptop", "book", "pen", "remote", "glasses", "shoe",
    "box", "bucket", "broom", "ladder", "drill", "tape", "sponge", "pan", "kettle", "charger",
)  # fmt: skip
PLACES: tuple[str, ...] = ("kitchen", "garage", "garden", "bathroom", "bedroom", "shop", "balcony", "office")

_TOKEN_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def tokenize_query(text: str) -> list[str]:
    """The tokens of a query, one row each in its text feature file.

    Lower-cased runs of letters/digits and single punctuation characters:
    ``"Where is the knife?"`` -> ``["where", "is", "the", "knife", "?"]``.
    """
    return _TOKEN_RE.findall(text.lower())

